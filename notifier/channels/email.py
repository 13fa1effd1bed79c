"""Email: one target, the recipient's address, sent through SendGrid or SMTP (providers_for("email")).

The message is built from the delivery's stored content; for a type whose email is tracked
(notifier.tracking.tracking_enabled: marketing by default, NotificationType.track_engagement), its web
links go through the click redirect and an open pixel is added, with this delivery's id in their signed
tokens. The rewrite happens here, at send time, not at render time: the delivery id exists only now,
every send (a replay is a new delivery) gets its own URLs, and Delivery.content keeps the rendered HTML
the click redirect reads its targets from.
"""
import dataclasses

from notifier.tracking import tracked_html, tracking_enabled

from .base import ProviderChannel, Target, message_from_delivery


class EmailChannel(ProviderChannel):
    name = "email"

    def targets(self, recipient, devices):
        if not recipient.email:
            return [], "recipient has no email address"
        return [Target(address=recipient.email)], ""

    def message_for(self, delivery):
        message = message_from_delivery(delivery)
        if message.html_body and tracking_enabled(delivery.notification.type):
            message = dataclasses.replace(message, html_body=tracked_html(message.html_body, delivery.id))
        return message

"""Email: one target, the recipient's address, sent through SendGrid or SMTP (providers_for("email")).

The message is built from the delivery's stored content; for a type whose email is tracked
(notifier.tracking.tracking_enabled: marketing by default, NotificationType.track_engagement), its web
links go through the click redirect and an open pixel is added, with this delivery's id in their signed
tokens. The rewrite happens here, at send time, not at render time: the delivery id exists only now,
every send (a replay is a new delivery) gets its own URLs, and Delivery.content keeps the rendered HTML
the click redirect reads its targets from.
"""
import dataclasses

from notifier.models import EmailSuppression
from notifier.tracking import tracked_html, tracking_enabled

from .base import ProviderChannel, Target, message_from_delivery

# Where email_suppressions_load keeps a recipient's suppression: (the address it was read for, the row or None).
_LOADED = "_email_suppression"


class EmailChannel(ProviderChannel):
    name = "email"

    def targets(self, recipient, devices):
        if not recipient.email:
            return [], "recipient has no email address"
        suppression = email_suppression_of(recipient)
        if suppression is not None:  # SendGrid reported the address dead: sending again hurts the sender
            return [], suppression.describe()
        return [Target(address=recipient.email)], ""

    def message_for(self, delivery):
        message = message_from_delivery(delivery)
        if message.html_body and tracking_enabled(delivery.notification.type):
            # The recipient's unsubscribe URL is what tells a campaign's bodies apart (tracked_html).
            unsubscribe = message.headers.get("List-Unsubscribe", "").removeprefix("<").removesuffix(">")
            message = dataclasses.replace(message, html_body=tracked_html(message.html_body, delivery.id,
                                                                          vary=unsubscribe))
        return message


def email_suppressions_load(recipients) -> None:
    """Read the suppressions (EmailSuppression) of these recipients' addresses in one query and keep each
    on its recipient for targets(): the route step calls this once per batch. Recipients loaded already
    are skipped."""
    pending = [r for r in recipients if r.email and getattr(r, _LOADED, (None,))[0] != r.email.lower()]
    if not pending:
        return
    found = {s.address: s for s in EmailSuppression.objects.filter(address__in={r.email.lower() for r in pending})}
    for recipient in pending:
        setattr(recipient, _LOADED, (recipient.email.lower(), found.get(recipient.email.lower())))


def email_suppression_of(recipient) -> EmailSuppression | None:
    """The suppression of the recipient's address, or None: as loaded for its batch, else one query (the
    paths that route one recipient at a time: digests, replays, the admin's test send)."""
    if not recipient.email:
        return None
    address = recipient.email.lower()
    loaded = getattr(recipient, _LOADED, None)
    if loaded is None or loaded[0] != address:
        email_suppressions_load([recipient])
        loaded = getattr(recipient, _LOADED)
    return loaded[1]

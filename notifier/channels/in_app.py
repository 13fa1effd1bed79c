from notifier.models import InboxItem
from notifier.providers.base import SendResult

from .base import Channel, Target


class InAppChannel(Channel):
    """The in-app inbox: delivering is writing the inbox item, so no provider is involved."""

    name = "in_app"

    def targets(self, recipient, devices):
        return [Target(address=recipient.user_id)], ""

    def deliver(self, deliveries):
        # ignore_conflicts: one inbox item per notification, even if a delivery runs twice.
        InboxItem.objects.bulk_create(
            [
                InboxItem(
                    recipient_id=d.notification.recipient_id,
                    notification_id=d.notification_id,
                    title=d.content.get("title", ""),
                    body=d.content.get("body", ""),
                    action_url=d.content.get("action_url", ""),
                    data=d.notification.data,
                )
                for d in deliveries
            ],
            ignore_conflicts=True,
        )
        for d in deliveries:
            d.provider = "inbox"
        return [SendResult(provider_message_id=f"inbox-{d.notification_id}", status="delivered") for d in deliveries]

from django.db import transaction

from notifier.db import row_new, rows_insert, rows_write_isolated
from notifier.models import InboxItem
from notifier.providers.base import PermanentError, SendResult

from .base import Channel, Target


class InAppChannel(Channel):
    """The in-app inbox: delivering is writing the inbox item, so no provider is involved. Open inbox
    streams hear about new items once the rows are committed (notifier/inbox.py)."""

    name = "in_app"

    def targets(self, recipient, devices):
        return [Target(address=recipient.user_id)], ""

    def deliver(self, deliveries):
        from notifier.inbox import inbox_items_published
        from notifier.inbox_cache import inbox_changed_on_commit

        items = [
            row_new(
                InboxItem,
                recipient_id=d.notification.recipient_id,
                notification_id=d.notification_id,
                title=d.content.get("title", ""),
                body=d.content.get("body", ""),
                action_url=d.content.get("action_url", ""),
                data=d.notification.data,
            )
            for d in deliveries
        ]
        # One insert for the batch; an item the inbox cannot store fails its own delivery, not the batch.
        # ignore_conflicts: one inbox item per notification, even if a delivery runs twice.
        refused = rows_write_isolated(items, lambda rows: rows_insert(InboxItem, rows, ignore_conflicts=True))
        stored = [d for index, d in enumerate(deliveries) if index not in refused]
        user_ids = {d.notification.recipient_id: d.notification.recipient.user_id for d in stored}
        notification_ids = [d.notification_id for d in stored]
        # The cached first pages and badges go first: a stream told of an item re-reads them.
        inbox_changed_on_commit(user_ids.values())
        transaction.on_commit(lambda: inbox_items_published(notification_ids, user_ids), robust=True)
        for index, d in enumerate(deliveries):
            d.provider = "inbox"
            if index in refused:
                yield index, PermanentError(f"the inbox cannot store this item: {str(refused[index]).strip()}", code="storage")
            else:
                yield index, SendResult(provider_message_id=f"inbox-{d.notification_id}", status="delivered")

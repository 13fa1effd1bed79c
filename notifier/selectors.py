"""Read queries used by the API and admin."""
import uuid

from notifier.models import Delivery, Notification, SandboxMessage

SANDBOX_PAGE = 200


def notification_for_producer(producer, notification_id) -> Notification | None:
    """A notification, if this producer sent it (another producer's id is not found)."""
    try:
        notification_id = uuid.UUID(str(notification_id))
    except ValueError:
        return None
    return Notification.objects.filter(id=notification_id, producer=producer).select_related("type", "recipient").first()


def notification_deliveries(notification):
    """A notification's deliveries, for paging (they may be many: one per device of the user)."""
    return Delivery.objects.filter(notification=notification).select_related("template")


def sandbox_messages(producer, user_id=None, channel=None, notification_id=None):
    """What the sandbox recorded for this producer's notifications, newest first (another producer's
    messages are not listed)."""
    messages = SandboxMessage.objects.filter(producer=producer).order_by("-id")
    if user_id:
        messages = messages.filter(user_id=user_id)
    if channel:
        messages = messages.filter(channel=channel)
    if notification_id:
        messages = messages.filter(notification_id=notification_id)
    return messages[:SANDBOX_PAGE]

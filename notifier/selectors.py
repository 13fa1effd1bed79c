"""Read queries used by the API and admin."""
import uuid

from django.db.models import Exists, OuterRef, Prefetch

from notifier.models import Delivery, DeliveryAttempt, DeliveryEvent, DeliveryStatus, Notification, SandboxMessage

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
    return Delivery.objects.filter(notification=notification).select_related("template").prefetch_related(
        Prefetch("events", DeliveryEvent.objects.order_by("id")))  # as recorded: providers give whole seconds


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


def dead_letters(producer, channel=None, provider=None, type_key=None, error_code=None, since=None, until=None,
                 ids=None):
    """This producer's dead deliveries (another producer's are not listed; None: every producer's, for the
    admin), filtered, with their notification (type and recipient), their replay and their attempt history
    loaded. Callers order them (newest first: -failed_at, -id, the delivery_dead index). `error_code`
    matches any attempt's provider code; since/until bound failed_at (until exclusive); `ids` picks rows."""
    rows = Delivery.objects.filter(status=DeliveryStatus.DEAD)
    if producer is not None:
        rows = rows.filter(notification__producer=producer)
    if ids is not None:
        rows = rows.filter(id__in=ids)
    if channel:
        rows = rows.filter(channel=channel)
    if provider:
        rows = rows.filter(provider=provider)
    if type_key:
        rows = rows.filter(notification__type__key=type_key)
    if error_code:
        rows = rows.filter(Exists(DeliveryAttempt.objects.filter(delivery=OuterRef("pk"), provider_code=error_code)))
    if since:
        rows = rows.filter(failed_at__gte=since)
    if until:
        rows = rows.filter(failed_at__lt=until)
    return rows.select_related("notification__type", "notification__recipient", "replayed_as").prefetch_related(
        Prefetch("attempt_history", DeliveryAttempt.objects.order_by("number", "id"))
    )

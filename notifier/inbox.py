"""The in-app inbox: reading state, the unread badge, live events and retention.

Live updates travel over Redis pub/sub, one channel per user, published after the inbox rows are committed;
the SSE view (notifier/api/inbox.py) subscribes for the life of a stream. A lost event costs nothing that
matters: the rows are the truth, a reconnecting stream catches up from Last-Event-ID, and the badge is
re-read from the database on every event.

Reading an item counts as opening its notification's in-app delivery (its status becomes `opened`, once,
through notifier/pipeline/status.py), and the app reports opens, clicks and dismissals of push and in-app
notifications through notification_engagement_record.

The unread badge is a capped count over a partial index of unread rows (`inbox_unread`), not a counter
column: it is always consistent with the rows (no drift to repair after a crash, a purge or a bulk update),
costs nothing on write, and reads at most NOTIFIER_INBOX_UNREAD_COUNT_CAP + 1 index entries however big
the table or the user's inbox.

The first page and the badge are cached in Redis per user (notifier/inbox_cache.py). Every write here that
changes what a user's inbox shows calls inbox_changed_on_commit for that user, and so must any new one.
"""
from __future__ import annotations

import base64
import logging
from datetime import datetime, timedelta

import orjson
import redis
from django.conf import settings
from django.db import connection, transaction
from django.db.models.signals import post_delete
from django.utils import timezone

from notifier.models import (
    DELIVERY_SUCCESS_STATUSES, Channel, Delivery, DeliveryStatus, EventSource, InboxItem, Notification, Recipient,
)
from notifier.inbox_cache import inbox_changed_on_commit
from notifier.pipeline.escalation import escalations_cancel_read
from notifier.pipeline.status import StatusEvent, delivery_events_apply
from notifier.redis_client import redis_client

log = logging.getLogger(__name__)

CHANNEL_PREFIX = "notifier:inbox:"
PURGE_BATCH_SIZE = 5000


class BadCursor(ValueError):
    pass


# --- reads ---------------------------------------------------------------------------------------------

def inbox_page(recipient_id: int, cursor: str | None, limit: int, archived: bool = False):
    """One page of a user's inbox, newest first, and the cursor of the next page (None on the last).
    One query on the (recipient, created_at desc, id desc) index, whatever the inbox's size."""
    items = InboxItem.objects.filter(recipient_id=recipient_id, archived_at__isnull=not archived)
    if cursor:
        created_at, item_id = cursor_decode(cursor)
        # (created_at, id) < the cursor's, written so that the first condition bounds an index range scan
        # and every database compares the timestamps itself (a raw row comparison fed SQLite a string).
        items = items.filter(created_at__lte=created_at).exclude(created_at=created_at, id__gte=item_id)
    page = list(items.order_by("-created_at", "-id")[: limit + 1])
    next_cursor = cursor_encode(page[limit - 1]) if len(page) > limit else None
    return page[:limit], next_cursor


def inbox_unread_count(recipient_id: int) -> tuple[int, bool]:
    """The unread badge: (count, capped). Counts at most the cap + 1 entries of the `inbox_unread` index.

    Plain SQL: the ORM compiles a sliced .count() into an aggregation over a subquery, which cost about a
    third of an inbox read's CPU; the conditions are the partial index's own."""
    cap = settings.NOTIFIER_INBOX_UNREAD_COUNT_CAP
    with connection.cursor() as cursor:
        cursor.execute(_UNREAD_COUNT_SQL, [recipient_id, cap + 1])
        count = cursor.fetchone()[0]
    return min(count, cap), count > cap


def _column(name: str) -> str:
    return connection.ops.quote_name(InboxItem._meta.get_field(name).column)


_UNREAD_COUNT_SQL = (
    f"SELECT count(*) FROM (SELECT 1 FROM {connection.ops.quote_name(InboxItem._meta.db_table)} "
    f"WHERE {_column('recipient')} = %s AND {_column('read_at')} IS NULL AND {_column('archived_at')} IS NULL "
    f"LIMIT %s) AS unread"
)


def cursor_encode(item: InboxItem) -> str:
    raw = orjson.dumps([item.created_at.isoformat(), item.id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def cursor_decode(cursor: str) -> tuple[datetime, int]:
    """The (created_at, id) a cursor_encode cursor holds. Raises BadCursor for anything else, including
    what would fail in the query: a time that is not UTC (PostgreSQL takes offsets up to ±15:59 only,
    Python up to ±23:59; cursors are written in UTC) or an id beyond a bigint."""
    try:
        created_at, item_id = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        created_at = datetime.fromisoformat(created_at)
        if created_at.utcoffset() != timedelta(0) or type(item_id) is not int or not 0 < item_id < 2 ** 63:
            raise ValueError(cursor)
        return created_at, item_id
    except Exception as error:
        raise BadCursor("Not a cursor this API returned.") from error


# --- writes --------------------------------------------------------------------------------------------

def inbox_item_update(recipient, notification_id, read: bool | None = None, archived: bool | None = None):
    """Mark one item read/unread and/or archived/unarchived; reading it cancels its notification's pending
    escalation. Returns the item, or None when this user has no such item (another user's id is simply
    not found)."""
    now = timezone.now()
    item = InboxItem.objects.filter(recipient=recipient, notification_id=notification_id).first()
    if item is None:
        return None
    changes = {}
    if read is not None:
        changes["read_at"] = (item.read_at or now) if read else None
    if archived is not None:
        changes["archived_at"] = (item.archived_at or now) if archived else None
    if changes:
        InboxItem.objects.filter(id=item.id).update(**changes)
        if read:
            escalations_cancel_read([notification_id])
            in_app_deliveries_opened(notification_id=notification_id)
        for name, value in changes.items():
            setattr(item, name, value)
        inbox_changed_on_commit([recipient.user_id])
        transaction.on_commit(lambda: inbox_publish(recipient.user_id, "changed", {"id": str(notification_id)}),
                              robust=True)
    return item


def inbox_mark_all_read(recipient) -> int:
    """Mark every unread item read, and cancel their pending escalations; returns how many changed. One
    UPDATE on the unread index, then a fixed number of queries for the escalations, however many."""
    now = timezone.now()
    updated = InboxItem.objects.filter(recipient=recipient, read_at=None, archived_at=None).update(read_at=now)
    if updated:
        escalations_cancel_read(Notification.objects.filter(
            recipient=recipient, escalate_at__isnull=False, inbox_item__read_at__isnull=False).values("id"))
        # The items this call marked read are those stamped with its own `now`: one query finds their
        # deliveries, however many.
        in_app_deliveries_opened(notification__recipient=recipient, notification__inbox_item__read_at=now)
    if updated:
        inbox_changed_on_commit([recipient.user_id])
        transaction.on_commit(lambda: inbox_publish(recipient.user_id, "changed", {"all_read": True}), robust=True)
    return updated


# --- engagement ----------------------------------------------------------------------------------------

# What the app may report about a notification it showed (POST /api/v1/users/{id}/notifications/{id}/events).
ENGAGEMENT_EVENTS = ("opened", "clicked", "dismissed")
ENGAGEMENT_CHANNELS = (Channel.PUSH, Channel.IN_APP)


def in_app_deliveries_opened(**delivery_filter) -> None:
    """Record `opened` for the in-app deliveries matching `delivery_filter` (Delivery.objects.filter
    keywords): their inbox items were read. One query for the ids, then one status call for all of them;
    the status machine keeps the first open of each delivery and ignores the rest."""
    # Only those an open still moves: a user's many old, already opened items are neither read nor locked.
    ids = Delivery.objects.filter(channel=Channel.IN_APP, status__in=(DeliveryStatus.SENT, DeliveryStatus.DELIVERED),
                                  **delivery_filter).values_list("id", flat=True)
    delivery_events_apply([StatusEvent(delivery_id, DeliveryStatus.OPENED, source=EventSource.APP,
                                       payload={"via": "inbox read"}) for delivery_id in ids])


def notification_engagement_record(recipient, notification_id, event: str, channel: str | None = None) -> list | None:
    """What the app reports about one of the user's notifications, on one channel (push or in_app) or,
    without one, on both: `opened` and `clicked` become the status of each of its deliveries there that
    reached the user (sent, delivered, opened, clicked); `dismissed` archives the inbox item (in_app) and changes no
    delivery status, since a dismissal is not a step of a delivery (for push nothing is stored). Returns
    the deliveries concerned, or None when the user has no such notification."""
    if not Notification.objects.filter(id=notification_id, recipient=recipient).exists():
        return None
    channels = [channel] if channel else list(ENGAGEMENT_CHANNELS)
    deliveries = Delivery.objects.filter(notification_id=notification_id, channel__in=channels,
                                         status__in=DELIVERY_SUCCESS_STATUSES).order_by("id")
    if event == "dismissed":
        if Channel.IN_APP in channels:
            inbox_item_update(recipient, notification_id, archived=True)
        return list(deliveries)
    delivery_events_apply([StatusEvent(delivery_id, event, source=EventSource.APP, payload={"via": "app event"})
                           for delivery_id in deliveries.values_list("id", flat=True)])
    return list(deliveries)


def inbox_purge(now=None, batch_size: int = PURGE_BATCH_SIZE) -> int:
    """Delete inbox items older than the retention, a batch at a time so no transaction holds many locks.
    Returns how many were deleted."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.NOTIFIER_INBOX_RETENTION_DAYS)
    deleted = 0
    while True:
        rows = list(InboxItem.objects.filter(created_at__lt=cutoff).order_by("created_at")
                    .values_list("id", "recipient__user_id")[:batch_size])
        if not rows:
            return deleted
        deleted += InboxItem.objects.filter(id__in=[item_id for item_id, _ in rows]).delete()[0]
        inbox_changed_on_commit(user_id for _, user_id in rows)  # an old unread item counted in the badge
        if len(rows) < batch_size:
            return deleted


def _recipient_deleted(sender, instance, **kwargs):
    # Its items went with it (on_delete=CASCADE): a reader of this user id must not be served them.
    inbox_changed_on_commit([instance.user_id])


post_delete.connect(_recipient_deleted, sender=Recipient, dispatch_uid="notifier.inbox.recipient_deleted")


# --- live events ---------------------------------------------------------------------------------------

def inbox_channel(user_id: str) -> str:
    return CHANNEL_PREFIX + user_id


def sse_frame(event: str, payload: dict, event_id=None) -> str:
    """One Server-Sent Events frame."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {orjson.dumps(payload).decode()}\n\n"


def inbox_item_payload(item: InboxItem) -> dict:
    """An inbox item as the API shows it; `id` is the notification's id."""
    return {
        "id": str(item.notification_id),
        "title": item.title,
        "body": item.body,
        "action_url": item.action_url,
        "data": item.data,
        "read": item.read_at is not None,
        "read_at": item.read_at.isoformat() if item.read_at else None,
        "archived_at": item.archived_at.isoformat() if item.archived_at else None,
        "created_at": item.created_at.isoformat(),
    }


def inbox_publish(user_id: str, event: str, payload: dict, event_id=None) -> None:
    """Tell the user's open streams. Never raises: the rows are the truth, streams re-read them."""
    try:
        redis_client().publish(inbox_channel(user_id), sse_frame(event, payload, event_id))
    except redis.RedisError as error:
        log.warning("inbox: could not publish %s for user %s: %s", event, user_id, error)


def inbox_items_published(notification_ids: list, user_ids: dict) -> None:
    """Publish new inbox items to the streams their users have open: one Redis round trip to ask which
    (PUBSUB NUMSUB), then one query and one round trip for those. `user_ids` maps recipient id → user id.

    A campaign chunk's thousand items mostly go to users with no stream open: they cost one NUMSUB, not
    a thousand rows read and a thousand frames published. A stream opened just after the NUMSUB misses
    nothing that matters: it subscribes before it reads the badge, which counts the committed item, and a
    reconnect replays from Last-Event-ID (api/inbox.py)."""
    try:
        client = redis_client()
        channels = {recipient_id: inbox_channel(user_id) for recipient_id, user_id in user_ids.items()}
        counts = client.pubsub_numsub(*channels.values()) if channels else []
        listening = [recipient_id for recipient_id, (_, subscribers) in zip(channels, counts) if subscribers]
        if not listening:
            return
        items = InboxItem.objects.filter(notification_id__in=notification_ids, recipient_id__in=listening)
        pipe = client.pipeline(transaction=False)
        for item in items:
            pipe.publish(channels[item.recipient_id], sse_frame("notification", inbox_item_payload(item), item.id))
        pipe.execute()
    except redis.RedisError as error:
        log.warning("inbox: could not publish %s new items: %s", len(notification_ids), error)

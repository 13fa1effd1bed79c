"""Escalation when unseen: `"escalation": {"channels": ["email"], "if_unread_after_seconds": 600}` sends on
those channels only if the notification's in-app item is still unread after the delay.

The waiting state is one column: `Notification.escalate_at`, set by the route step (the delay after the
in-app delivery is due) when the notification has an in-app delivery to wait on, with one decision
`escalation_pending` per escalation channel ("escalation: sent if the in-app item is still unread at …").
While it is set the notification stays `processing` (dispatch.notifications_refresh_status leaves it
open). It ends one of three ways, each clearing escalate_at under the notification's row lock and then
refreshing the notification's status (it closes, or falls back, as usual):

- beat's `release-escalations` (every NOTIFIER_RELEASE_HOLDS_INTERVAL_SECONDS, like release-holds) finds
  it due and the
  item unread (or never stored): the escalation channels are routed then, by the route step's rules
  (preferences, quiet hours at that moment, templates, rate limits), decision tagged `"step":
  "escalation"`;
- the user reads the item (one item, or mark-all-read, set-based): decision `suppressed`, "read before
  escalation", and nothing is sent;
- the notification is no longer processing when it is due (cancelled): it is cleared, nothing is sent.

Long waits live in the database, never in Celery countdowns (docs/architecture.md). Releasing takes due
rows with SELECT … FOR UPDATE SKIP LOCKED, so two beat ticks never release one escalation twice.
"""
from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from notifier.db import rows_update
from notifier.models import Delivery, DeliveryStatus, InboxItem, Notification, NotificationStatus
from notifier.pipeline.deliveries import active_devices
from notifier.pipeline.dispatch import notifications_refresh_status
from notifier.pipeline.render import active_templates
from notifier.pipeline.route import ESCALATION, notifications_route_step
from notifier.pipeline.wake import wake_deliver

log = logging.getLogger(__name__)

READ_BEFORE_ESCALATION = "read before escalation"


def release_due_escalations(now=None, batch_size=None) -> int:
    """Route every due escalation whose in-app item is unread, and end the others; returns how many
    escalations were sent. Each batch is one transaction with a fixed number of queries."""
    now = now or timezone.now()
    batch_size = batch_size or settings.NOTIFIER_RELEASE_BATCH_SIZE
    sent = 0
    while True:
        count, taken = _release_batch(now, batch_size)
        sent += count
        if taken < batch_size:
            break
    if sent:
        log.info("escalation: sent %s escalations whose in-app item was unread", sent)
    return sent


def _release_batch(now, batch_size: int) -> tuple[int, int]:
    with transaction.atomic():
        notifications = list(
            Notification.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(escalate_at__lte=now)
            .select_related("type", "recipient")
            .order_by("escalate_at")[:batch_size]
        )
        if not notifications:
            return 0, 0
        read = set(InboxItem.objects.filter(notification_id__in=[n.id for n in notifications], read_at__isnull=False)
                   .values_list("notification_id", flat=True))
        plans = []
        for notification in notifications:
            notification.escalate_at = None
            channels = notification.escalation["channels"]
            if notification.status != NotificationStatus.PROCESSING:
                _decide_all(notification, channels, "skipped", f"escalation: the notification is {notification.status}")
            elif notification.id in read:
                _decide_all(notification, channels, "suppressed", READ_BEFORE_ESCALATION)
            else:
                why = f"escalation: the in-app item was unread after {notification.escalation['if_unread_after_seconds']} s"
                plans.extend((notification, channel, why) for channel in channels)
        escalating = list({n.id: n for n, _, _ in plans}.values())
        created = notifications_route_step(
            ESCALATION, plans, active_devices(n.recipient_id for n in escalating),
            active_templates(n.type_id for n in escalating), now,
        ) if plans else {}
        deliveries = [d for ds in created.values() for d in ds]
        Delivery.objects.bulk_create(deliveries, ignore_conflicts=True)
        rows_update(notifications, ["decisions", "escalate_at"])
        notifications_refresh_status({n.id for n in notifications})
        queues = {(d.channel, d.priority) for d in deliveries if d.status == DeliveryStatus.QUEUED}
        transaction.on_commit(lambda: [wake_deliver(c, p) for c, p in queues], robust=True)
    return len(escalating), len(notifications)


def escalations_cancel_read(notification_ids) -> int:
    """The user read these notifications' in-app items: end their pending escalations (decision
    `suppressed`, "read before escalation"), and close what has nothing else left in flight. Runs in the
    caller's transaction; a fixed number of queries however many. Returns how many were cancelled."""
    with transaction.atomic(savepoint=False):
        pending = list(Notification.objects.select_for_update()
                       .filter(id__in=notification_ids, escalate_at__isnull=False).order_by("id"))
        for notification in pending:
            notification.escalate_at = None
            _decide_all(notification, notification.escalation["channels"], "suppressed", READ_BEFORE_ESCALATION)
        rows_update(pending, ["decisions", "escalate_at"])
        notifications_refresh_status({n.id for n in pending})
    return len(pending)


def _decide_all(notification, channels, decision: str, reason: str) -> None:
    notification.decisions = [*notification.decisions, *(
        {"channel": channel, "decision": decision, "reason": reason, "step": ESCALATION} for channel in channels
    )]

"""The sweeper, run by beat every NOTIFIER_SWEEP_INTERVAL_SECONDS: nothing accepted is ever left behind.

- Deliveries claimed by a worker that died (still `sending` past the lease) go back to the queue, or to the
  dead letter when their attempts are used up, closing their notification as the deliver step would.
- Every queue that has due rows gets a wake-up: scheduled sends whose time came, retries whose backoff
  ended, and rows whose wake-up was lost because the broker was down when they were accepted. A queue
  whose rows have been due for longer than a sweep interval gets one even if its flag says one is
  pending: the message may have been lost after the flag was set, and a spare wake-up finds nothing to do.
- Idempotency keys older than their retention are deleted.
"""
import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Case, TextField, Value, When
from django.db.models.functions import Concat
from django.utils import timezone

from notifier.models import (
    NOTIFICATION_OPEN_STATUSES,
    AttemptOutcome,
    Channel,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    IdempotencyKey,
    Notification,
    PendingProviderEvent,
    Priority,
)
from notifier.pipeline.dispatch import notifications_refresh_status
from notifier.pipeline.status import deliveries_move
from notifier.pipeline.wake import wake_deliver, wake_route

log = logging.getLogger(__name__)

WORKER_LOST = "worker lost during the attempt; retrying"
WORKER_LOST_ON_LAST_ATTEMPT = "worker lost during the last allowed attempt"


def sweep() -> dict:
    return {
        "claims_released": release_expired_claims(),
        "queues_woken": wake_due_queues(),
        "idempotency_keys_deleted": purge_idempotency_keys(),
        "pending_events_deleted": purge_pending_events(),
    }


def release_expired_claims(now=None) -> int:
    """Return deliveries whose claim outlived its lease to the queue, or to the dead letter on their last
    attempt. The last real error stays in last_error, with the lost worker noted after it. A fixed number
    of queries, whatever the number of rows."""
    now = now or timezone.now()
    with transaction.atomic():
        expired = list(
            Delivery.objects.select_for_update(skip_locked=True)
            .filter(status=DeliveryStatus.SENDING,
                    claimed_at__lt=now - timedelta(seconds=settings.NOTIFIER_CLAIM_LEASE_SECONDS))
            .values_list("id", "notification_id", "priority", "attempts")
        )
        dead, requeued = [], []
        for row in expired:
            _, _, priority, attempts = row
            (dead if attempts >= settings.NOTIFIER_RETRY_POLICY[priority]["max_attempts"] else requeued).append(row)
        deliveries_move({"id__in": [row[0] for row in dead]}, DeliveryStatus.DEAD, at=now, fields={
            "claim_token": None, "failed_at": now, "last_error": _noted(WORKER_LOST_ON_LAST_ATTEMPT)})
        # next_attempt_at is left as it was: the row was due when it was claimed, so it is due again now.
        deliveries_move({"id__in": [row[0] for row in requeued]}, DeliveryStatus.QUEUED, at=now, fields={
            "claim_token": None, "last_error": _noted(WORKER_LOST)})
        # The lost attempts' history rows. Which provider the worker was calling is not known: left blank.
        lost = [(row, WORKER_LOST_ON_LAST_ATTEMPT) for row in dead] + [(row, WORKER_LOST) for row in requeued]
        DeliveryAttempt.objects.bulk_create([
            DeliveryAttempt(delivery_id=delivery_id, number=attempts, outcome=AttemptOutcome.WORKER_LOST,
                            message=note, at=now)
            for (delivery_id, _, _, attempts), note in lost
        ])
        notifications_refresh_status({notification_id for _, notification_id, _, _ in dead})
    if expired:
        log.warning("sweep: released %s deliveries whose worker died (%s to the dead letter)", len(expired),
                    len(dead))
    return len(expired)


def _noted(note: str):
    """last_error with `note` after the error it holds, or the note alone when it holds none."""
    return Case(
        When(last_error="", then=Value(note)),
        default=Concat("last_error", Value(f"; then {note}"), output_field=TextField()),
        output_field=TextField(),
    )


def wake_due_queues(now=None) -> list[str]:
    """Wake every queue that has due rows. One query per queue."""
    now = now or timezone.now()
    overdue = now - timedelta(seconds=settings.NOTIFIER_SWEEP_INTERVAL_SECONDS)
    woken = []
    for priority in Priority.values:
        oldest = _oldest(Notification.objects.filter(status__in=NOTIFICATION_OPEN_STATUSES, priority=priority,
                                                     due_at__lte=now), "due_at")
        if oldest is not None and wake_route(priority, force=oldest <= overdue):
            woken.append(f"route.{priority}")
        for channel in Channel.values:
            oldest = _oldest(Delivery.objects.filter(status=DeliveryStatus.QUEUED, channel=channel, priority=priority,
                                                     next_attempt_at__lte=now), "next_attempt_at")
            if oldest is not None and wake_deliver(channel, priority, force=oldest <= overdue):
                woken.append(f"{channel}.{priority}")
    return woken


def _oldest(due, field: str):
    """When the longest-waiting of these due rows became due, or None if there are none (an index scan
    of the queue's partial index, like exists())."""
    return due.order_by(field).values_list(field, flat=True).first()


def purge_idempotency_keys(now=None) -> int:
    now = now or timezone.now()
    cutoff = now - timedelta(hours=settings.NOTIFIER_IDEMPOTENCY_TTL_HOURS)
    deleted, _ = IdempotencyKey.objects.filter(created_at__lt=cutoff).delete()
    return deleted


def purge_pending_events(now=None) -> int:
    """Drop provider reports that no delivery claimed within their retention (status.provider_events_apply):
    their message ids were never ours, or their send was never recorded."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.NOTIFIER_PENDING_EVENT_RETENTION_SECONDS)
    deleted, _ = PendingProviderEvent.objects.filter(received_at__lt=cutoff).delete()
    if deleted:
        log.warning("sweep: dropped %s provider status reports that matched no delivery", deleted)
    return deleted

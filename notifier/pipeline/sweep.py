"""The sweeper, run by beat every few seconds: nothing accepted is ever left behind.

- Deliveries claimed by a worker that died (still `sending` past the lease) go back to the queue, or to the
  dead letter when their attempts are used up.
- Every queue that has due rows gets a wake-up: scheduled sends whose time came, retries whose backoff
  ended, and rows whose wake-up was lost because the broker was down when they were accepted.
- Idempotency keys older than their retention are deleted.
"""
import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from notifier.models import NOTIFICATION_OPEN_STATUSES, Channel, Delivery, DeliveryStatus, IdempotencyKey, Notification, Priority
from notifier.pipeline.wake import wake_deliver, wake_route

log = logging.getLogger(__name__)


def sweep() -> dict:
    return {
        "claims_released": release_expired_claims(),
        "queues_woken": wake_due_queues(),
        "idempotency_keys_deleted": purge_idempotency_keys(),
    }


def release_expired_claims(now=None) -> int:
    now = now or timezone.now()
    expired = Delivery.objects.filter(
        status=DeliveryStatus.SENDING, claimed_at__lt=now - timedelta(seconds=settings.NOTIFIER_CLAIM_LEASE_SECONDS)
    )
    released = 0
    for priority, policy in settings.NOTIFIER_RETRY_POLICY.items():
        dead = expired.filter(priority=priority, attempts__gte=policy["max_attempts"]).update(
            status=DeliveryStatus.DEAD, claim_token=None, failed_at=now,
            last_error="worker lost during the last allowed attempt",
        )
        # next_attempt_at is left as it was: the row was due when it was claimed, so it is due again now.
        requeued = expired.filter(priority=priority).update(
            status=DeliveryStatus.QUEUED, claim_token=None, last_error="worker lost during the attempt; retrying"
        )
        released += dead + requeued
    if released:
        log.warning("sweep: released %s deliveries whose worker died", released)
    return released


def wake_due_queues(now=None) -> list[str]:
    now = now or timezone.now()
    woken = []
    for priority in Priority.values:
        due = Notification.objects.filter(status__in=NOTIFICATION_OPEN_STATUSES, priority=priority, due_at__lte=now)
        if due.exists() and wake_route(priority):
            woken.append(f"route.{priority}")
        for channel in Channel.values:
            due = Delivery.objects.filter(
                status=DeliveryStatus.QUEUED, channel=channel, priority=priority, next_attempt_at__lte=now
            )
            if due.exists() and wake_deliver(channel, priority):
                woken.append(f"{channel}.{priority}")
    return woken


def purge_idempotency_keys(now=None) -> int:
    now = now or timezone.now()
    cutoff = now - timedelta(hours=settings.NOTIFIER_IDEMPOTENCY_TTL_HOURS)
    deleted, _ = IdempotencyKey.objects.filter(created_at__lt=cutoff).delete()
    return deleted

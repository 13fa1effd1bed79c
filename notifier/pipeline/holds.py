"""Held deliveries: quiet hours and rate-limit holds wait in the database, and beat releases them.

A held delivery is a Delivery row with status `held` whose `next_attempt_at` is its release moment (the
API shows it as `release_at`); `status_reason` says why it waits. Reusing next_attempt_at keeps one
"when may this row go" column for every wait (retries, holds), and releasing is then just held → queued:
the row is already due. Long waits never become Celery countdowns (docs/architecture.md, "Reliability
rules").

`release_due_holds` runs every minute on the maintenance queue. It takes due rows in batches with
SELECT … FOR UPDATE SKIP LOCKED and flips them in the same transaction, conditionally on `held`, so two
beat ticks or workers running at once release disjoint rows and never the same hold twice.
"""
import logging

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from notifier.campaigns.stops import campaigns_stopped_ids
from notifier.models import Delivery, DeliveryStatus
from notifier.pipeline.status import deliveries_move
from notifier.pipeline.wake import wake_deliver

log = logging.getLogger(__name__)


def release_due_holds(now=None, batch_size=None) -> int:
    """Release every held delivery whose moment has come; returns how many. Wakes their deliver queues."""
    now = now or timezone.now()
    batch_size = batch_size or settings.NOTIFIER_RELEASE_BATCH_SIZE
    released = 0
    queues = set()
    due = Delivery.objects.filter(status=DeliveryStatus.HELD, next_attempt_at__lte=now)
    stopped = campaigns_stopped_ids()
    if stopped:  # a paused campaign's holds stay held until it resumes (campaigns/stops.py)
        due = due.exclude(campaign_id__in=stopped)
    while True:
        with transaction.atomic():
            rows = list(
                due.select_for_update(skip_locked=True)
                .order_by("next_attempt_at")
                .values_list("id", "channel", "priority")[:batch_size]
            )
            if not rows:
                break
            count = len(deliveries_move({"id__in": [r[0] for r in rows], "status": DeliveryStatus.HELD},
                                        DeliveryStatus.QUEUED, at=now))
        released += count
        queues.update((channel, priority) for _, channel, priority in rows)
        if len(rows) < batch_size:
            break
    for channel, priority in queues:
        wake_deliver(channel, priority)
    if released:
        log.info("holds: released %s held deliveries", released)
    return released

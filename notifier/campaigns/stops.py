"""Which campaigns' deliveries must not start now: those paused, and those cancelled whose rows the cancel
task may still be turning to `cancelled`. The deliver step leaves their queued rows unclaimed and the
hold release leaves their held rows held; resume makes them claimable again, so nothing is sent twice and
nothing is lost.

Read once a second per process at most: a pause takes effect within that, plus the batch a worker is
already sending (docs/campaigns.md, "Pause, resume, cancel").
"""
from __future__ import annotations

import time
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from notifier.models import Campaign, CampaignStatus

REFRESH_SECONDS = 1.0
# A cancelled campaign stays in the set this long: its cancel task ends well within it.
CANCELLED_KEPT = timedelta(hours=1)

_cache: dict = {"at": float("-inf"), "ids": frozenset()}


def campaigns_stopped_ids() -> frozenset:
    """The ids of the campaigns whose deliveries wait: paused, or cancelled within the last hour."""
    if time.monotonic() - _cache["at"] < REFRESH_SECONDS:
        return _cache["ids"]
    recent = timezone.now() - CANCELLED_KEPT
    ids = frozenset(Campaign.objects.filter(
        Q(status=CampaignStatus.PAUSED) | Q(status=CampaignStatus.CANCELLED, cancelled_at__gte=recent)
    ).values_list("id", flat=True))
    _cache.update(at=time.monotonic(), ids=ids)
    return ids


def campaigns_stopped_forget() -> None:
    """Read the set again on the next call (a pause in this process, a test)."""
    _cache["at"] = float("-inf")

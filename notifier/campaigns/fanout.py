"""The fan-out: a running campaign's segment, cut into chunks of about NOTIFIER_CAMPAIGN_CHUNK_SIZE
recipients by recipient id, each routed once by a chunk task with the route step's own rules.

    campaign_start ─▶ campaign_advance ─▶ CampaignChunk rows ─▶ campaign chunk tasks (queue `campaign`)
                          ▲      (one message per chunk)           │ notifications_route(new=True):
                          └── after each chunk, and beat every 1 s ◀┘ notifications + deliveries, one
                                                                     COPY each; the in-app items sent
                                                                     at once; wake the other *.low queues

`campaign_advance` makes the next chunks only while the campaign may go faster: fewer than
NOTIFIER_CAMPAIGN_CHUNKS_IN_FLIGHT chunks being routed, fewer than NOTIFIER_CAMPAIGN_MAX_QUEUED_DELIVERIES
of its deliveries waiting for a worker (fewer still under a throttle), the transactional backlog below
NOTIFIER_CAMPAIGN_SHED_BACKLOG (shedding), and, under a spread window, the chunk's moment come. So a
campaign of any size holds a few chunks' worth of work at a time: memory and queues stay flat, and a pause
or a cancel has little to stop. It holds the campaign's row lock (SKIP LOCKED: one advance at a time, the
others return at once); a chunk is a row range (after_recipient_id, last_recipient_id], so no list of ids
is ever held or sent. A chunk task locks its chunk row and marks it done in the transaction that writes
its rows: a chunk run twice, or by two workers, routes once; a chunk whose worker died is routed again
after NOTIFIER_CAMPAIGN_CHUNK_REPUBLISH_SECONDS.
"""
from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from notifier import metrics
from notifier.campaigns.counts import decisions_count
from notifier.campaigns.stops import CANCELLED_KEPT
from notifier.campaigns.segments import segment_ids_after, segment_recipients
from notifier.campaigns.windows import chunk_due_at, recipient_send_at
from notifier.db import row_new
from notifier.models import (
    DELIVERY_IN_FLIGHT_STATUSES,
    DELIVERY_WAITING_STATUSES,
    Campaign,
    CampaignChunk,
    CampaignStatus,
    Delivery,
    DeliveryStatus,
    Notification,
    NotificationStatus,
    Priority,
)
from notifier.pipeline.route import notifications_route
from notifier.pipeline.wake import publish_once

log = logging.getLogger(__name__)

CAMPAIGN_QUEUE = "campaign"
# A cancel's own task has this long to finish before beat publishes it again.
CANCEL_GRACE = timedelta(seconds=60)
# Under a throttle, a campaign keeps at most this many seconds of sends waiting (and at least a chunk).
THROTTLE_BACKLOG_SECONDS = 30


def campaign_start(campaign: Campaign) -> bool:
    """Start a scheduled campaign whose moment has come (none, or schedule_at passed): running, and its
    fan-out kicked after commit. Returns whether this call started it."""
    now = timezone.now()
    if campaign.schedule_at and campaign.schedule_at > now:
        return False
    started = Campaign.objects.filter(id=campaign.id, status=CampaignStatus.SCHEDULED).update(
        status=CampaignStatus.RUNNING, started_at=now)
    if started:
        campaign.status, campaign.started_at = CampaignStatus.RUNNING, now
        log.info("campaign %s started: about %s recipients", campaign.id, campaign.estimated_recipients)
        campaign_kick(campaign.id)
    return bool(started)


def campaign_kick(campaign_id) -> None:
    """Publish an advance of this campaign after the current transaction commits (at most one pending)."""
    from notifier.tasks import campaign_advance as task

    transaction.on_commit(lambda: publish_once(CAMPAIGN_QUEUE, task, (str(campaign_id),), flag=f"campaign:{campaign_id}"),
                          robust=True)


def campaigns_tick() -> int:
    """Beat: start the scheduled campaigns whose moment has come, and advance every running one (a chunk
    may have ended without a successor, a backlog may have cleared). Returns how many were advanced."""
    now = timezone.now()
    for campaign in Campaign.objects.filter(status=CampaignStatus.SCHEDULED, schedule_at__lte=now):
        campaign_start(campaign)
    running = list(Campaign.objects.filter(status=CampaignStatus.RUNNING).values_list("id", flat=True))
    for campaign_id in running:
        campaign_advance(campaign_id)
    _cancels_finish(now)
    return len(running)


def _cancels_finish(now) -> None:
    """Publish the cancel task again for campaigns cancelled a while ago that still have deliveries
    waiting: its first message was lost, or a chunk committed after it had passed. Until then stops.py
    keeps those rows unclaimed, so nothing is sent; this only tidies them."""
    from notifier.tasks import campaign_cancel_rest as task

    waiting = Delivery.objects.filter(campaign=OuterRef("pk"), status__in=DELIVERY_WAITING_STATUSES)
    unfinished = Campaign.objects.filter(status=CampaignStatus.CANCELLED, cancelled_at__gte=now - CANCELLED_KEPT,
                                         cancelled_at__lt=now - CANCEL_GRACE).filter(Exists(waiting))
    for campaign_id in unfinished.values_list("id", flat=True):
        publish_once("maintenance", task, (str(campaign_id),), flag=f"campaign-cancel:{campaign_id}")


def campaign_advance(campaign_id) -> int:
    """Make and publish the campaign's next chunks as far as it may go now, or mark it completed when
    everything has ended. Returns how many chunks it published."""
    now = timezone.now()
    published = []
    with transaction.atomic():
        campaign = (Campaign.objects.select_for_update(skip_locked=True)
                    .filter(id=campaign_id, status=CampaignStatus.RUNNING).first())
        if campaign is None:
            return 0  # not running, or another advance holds it
        pending = CampaignChunk.objects.filter(campaign=campaign, status=CampaignChunk.PENDING)
        stale_before = now - timedelta(seconds=settings.NOTIFIER_CAMPAIGN_CHUNK_REPUBLISH_SECONDS)
        in_flight = pending.filter(published_at__gte=stale_before).count()
        room = settings.NOTIFIER_CAMPAIGN_CHUNKS_IN_FLIGHT - in_flight
        if room > 0:
            # Chunks left unrouted by a pause (published_at cleared) or lost with their worker go first.
            again = list(pending.exclude(published_at__gte=stale_before).order_by("number")
                         .values_list("number", flat=True)[:room])
            published.extend(again)
            room -= len(again)
        if room > 0 and campaign.fanned_out_at is None:
            room = min(room, _chunks_allowed(campaign))
            for _ in range(room):
                chunk = _chunk_next(campaign, now)
                if chunk is None:
                    break
                published.append(chunk.number)
        if published:
            CampaignChunk.objects.filter(campaign=campaign, number__in=published).update(published_at=now)
        elif campaign.fanned_out_at is not None and in_flight == 0 and not pending.exists():
            _complete_if_done(campaign, now)
    if published:
        from notifier.tasks import campaign_chunk as task

        for number in published:
            transaction.on_commit(lambda n=number: publish_once(CAMPAIGN_QUEUE, task, (str(campaign_id), n),
                                                                flag=f"campaign:{campaign_id}:{n}"), robust=True)
    return len(published)


def _chunks_allowed(campaign: Campaign) -> int:
    """How many more chunks the campaign may route now: as many as fit under its cap of waiting
    deliveries (one at least while it is under it), none while transactional traffic is backed up."""
    size = settings.NOTIFIER_CAMPAIGN_CHUNK_SIZE
    cap = settings.NOTIFIER_CAMPAIGN_MAX_QUEUED_DELIVERIES
    if campaign.throttle_per_second:
        cap = min(cap, max(size, campaign.throttle_per_second * THROTTLE_BACKLOG_SECONDS))
    waiting = Delivery.objects.filter(campaign=campaign, status=DeliveryStatus.QUEUED)[:cap].count()
    if waiting >= cap or transactional_backlog_high():
        return 0
    return max(1, (cap - waiting) // size)


def transactional_backlog_high() -> bool:
    """Whether more transactional deliveries (high and medium priority) are due and waiting than
    NOTIFIER_CAMPAIGN_SHED_BACKLOG: then campaigns route nothing new until the backlog clears."""
    threshold = settings.NOTIFIER_CAMPAIGN_SHED_BACKLOG
    if threshold <= 0:
        return False
    backlog = Delivery.objects.filter(status=DeliveryStatus.QUEUED, priority__in=(Priority.HIGH, Priority.MEDIUM),
                                      next_attempt_at__lte=timezone.now())[:threshold + 1].count()
    if backlog > threshold:
        metrics.campaign_shed_count()
        log.warning("campaigns: shedding, %s+ transactional deliveries are waiting; no new campaign chunk until "
                    "fewer than %s wait", threshold, threshold)
        return True
    return False


def _chunk_next(campaign: Campaign, now) -> CampaignChunk | None:
    """Make the campaign's next chunk (the next NOTIFIER_CAMPAIGN_CHUNK_SIZE recipients after its cursor),
    or None: its moment has not come (a spread window), or the segment is done (fanned_out_at is set)."""
    size = settings.NOTIFIER_CAMPAIGN_CHUNK_SIZE
    number = campaign.chunks_created + 1
    due_at = chunk_due_at(campaign.send_window, campaign.started_at, number, campaign.estimated_recipients, size)
    if due_at > now:
        return None
    ids = segment_ids_after(campaign, campaign.cursor, size)
    last_id = ids[-1] if ids else None
    if last_id is None:
        campaign.fanned_out_at = now
        campaign.save(update_fields=["fanned_out_at"])
        log.info("campaign %s fanned out: %s chunks", campaign.id, campaign.chunks_created)
        return None
    chunk = CampaignChunk.objects.create(campaign=campaign, number=number, after_recipient_id=campaign.cursor,
                                         last_recipient_id=last_id, due_at=due_at, published_at=now)
    campaign.cursor, campaign.chunks_created = last_id, number
    campaign.save(update_fields=["cursor", "chunks_created"])
    return chunk


def _complete_if_done(campaign: Campaign, now) -> None:
    if Delivery.objects.filter(campaign=campaign, status__in=DELIVERY_IN_FLIGHT_STATUSES).exists():
        return
    Campaign.objects.filter(id=campaign.id, status=CampaignStatus.RUNNING).update(
        status=CampaignStatus.COMPLETED, completed_at=now)
    log.info("campaign %s completed", campaign.id)


def campaign_chunk_run(campaign_id, number: int) -> int:
    """Route one chunk of a running campaign, once: a notification per recipient of its id range,
    decided by the route step's rules, stored with their deliveries in one INSERT each; the chunk's
    decisions counted on its row. Returns how many recipients it routed (0: done already, held by
    another worker, or its campaign is not running). Then advances the campaign, with no message."""
    now = timezone.now()
    with transaction.atomic():
        chunk = (CampaignChunk.objects.select_for_update(skip_locked=True)
                 .filter(campaign_id=campaign_id, number=number, status=CampaignChunk.PENDING).first())
        if chunk is None:
            return 0
        campaign = Campaign.objects.select_related("type", "producer").get(id=campaign_id)
        if campaign.status != CampaignStatus.RUNNING:
            # Paused (or cancelled) since it was published: unpublished, so a resume publishes it again.
            chunk.published_at = None
            chunk.save(update_fields=["published_at"])
            return 0
        recipients = list(segment_recipients(campaign, chunk.after_recipient_id, chunk.last_recipient_id)
                          .order_by("id"))
        notifications = [_notification_of(campaign, recipient, now) for recipient in recipients]
        if notifications:
            notifications_route(notifications, new=True)
        chunk.status, chunk.done_at, chunk.recipients = CampaignChunk.DONE, now, len(notifications)
        chunk.counts = decisions_count(n.decisions for n in notifications)
        chunk.save(update_fields=["status", "done_at", "recipients", "counts"])
        metrics.campaign_chunk_count(len(notifications))
    campaign_advance(campaign_id)
    return len(notifications)


def _notification_of(campaign: Campaign, recipient, now) -> Notification:
    notification = row_new(
        Notification, producer=campaign.producer, type=campaign.type, recipient=recipient, campaign=campaign,
        data=campaign.data, channels=campaign.channels, priority=Priority.LOW,
        status=NotificationStatus.ACCEPTED, due_at=now,
    )
    # A local-time window: the route step holds its deliveries until then (pipeline/route.py, _hold_until).
    notification.send_at = recipient_send_at(campaign.send_window, recipient, campaign.started_at)
    return notification

"""What a producer (through the API) or an operator (through the admin) does with a campaign: create it, dry
run it, pause, resume and cancel it, and read its progress. The fan-out itself is notifier/campaigns/fanout.py;
this module only records the request and moves the status, and calls fanout.campaign_start / campaign_kick
after commit.

Idempotency works as for notifications (pipeline/accept.py): the same idempotency key with the same body
answers the campaign it created (replayed), with another body raises IdempotencyConflict, and while the first
request's transaction is open raises IdempotencyKeyInFlight at once. A campaign keeps the fingerprint of the
request that made it, so the key stays bound to its body for as long as the campaign exists.

Status moves are conditional updates (`filter(status__in=...).update(...) == 1`), so two operators pausing
and cancelling at once cannot both win: a move that is not allowed from the status the row has raises
CampaignMoveRefused, which names that status.
"""
from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from django.db import IntegrityError, transaction
from django.db.models import Case, Count, Exists, OuterRef, Q, Value, When
from django.utils import timezone

from notifier.campaigns import fanout, segments
from notifier.campaigns.counts import counts_add
from notifier.models import (
    DELIVERY_WAITING_STATUSES,
    NOTIFICATION_OPEN_STATUSES,
    Campaign,
    CampaignChunk,
    CampaignStatus,
    Delivery,
    DeliveryStatus,
    Notification,
    NotificationType,
)
from notifier.pipeline.accept import IdempotencyConflict, IdempotencyKeyInFlight, idempotency_key_lock
from notifier.pipeline.cancel import notifications_cancel
from notifier.pipeline.wake import publish_once

log = logging.getLogger(__name__)

IDEMPOTENCY_NAMESPACE = "notifier.campaign-idempotency"

# The counters GET /api/v1/campaigns/{id} shows from the campaign's deliveries, by status (CAMPAIGNS.md).
DELIVERY_COUNTERS = {
    "sent": (DeliveryStatus.SENT, DeliveryStatus.DELIVERED, DeliveryStatus.OPENED, DeliveryStatus.CLICKED),
    "delivered": (DeliveryStatus.DELIVERED, DeliveryStatus.OPENED, DeliveryStatus.CLICKED),
    "opened": (DeliveryStatus.OPENED, DeliveryStatus.CLICKED),
    "clicked": (DeliveryStatus.CLICKED,),
    "failed": (DeliveryStatus.FAILED, DeliveryStatus.BOUNCED),
    "dead": (DeliveryStatus.DEAD,),
    "cancelled": (DeliveryStatus.CANCELLED,),
    "waiting": (DeliveryStatus.QUEUED, DeliveryStatus.HELD, DeliveryStatus.SENDING),
}

# Which statuses each move starts from (anything else is refused with the status the campaign has).
MOVES_FROM = {
    "pause": (CampaignStatus.RUNNING, CampaignStatus.SCHEDULED),
    "resume": (CampaignStatus.PAUSED,),
    "cancel": (CampaignStatus.SCHEDULED, CampaignStatus.RUNNING, CampaignStatus.PAUSED),
}

# The cancel task cancels this many notifications per transaction, and re-publishes itself after this long
# (well within a task's soft time limit), so a million waiting notifications are never loaded at once.
CANCEL_SLICE = 2000
CANCEL_TASK_SECONDS = 60


@dataclass
class CampaignSpec:
    """A validated campaign request (notifier/api/campaigns.py CampaignRequestSerializer, or the admin's form)."""

    name: str
    type: NotificationType
    segment: dict  # as segments.segment_parse normalized it
    data: dict = field(default_factory=dict)
    channels: list[str] = field(default_factory=list)  # empty: the type's default channels
    schedule_at: datetime | None = None
    send_window: dict | None = None
    throttle_per_second: int | None = None
    idempotency_key: str = ""
    fingerprint: str = ""  # of the request body (pipeline/accept.request_fingerprint)


class CampaignMoveRefused(Exception):
    """A pause, resume or cancel the campaign's status does not allow."""

    def __init__(self, campaign_id, action: str, status: str | None):
        *others, last = MOVES_FROM[action]
        allowed = f"{', '.join(others)} or {last}" if others else last
        super().__init__(f"Campaign {campaign_id} is {status}: only a {allowed} campaign can be {_past(action)}.")
        self.campaign_id, self.action, self.status = campaign_id, action, status


def _past(action: str) -> str:
    return {"pause": "paused", "resume": "resumed", "cancel": "cancelled"}[action]


def campaign_build(producer, spec: CampaignSpec) -> tuple[Campaign, list[str] | None]:
    """The campaign `spec` describes, unsaved, and the user ids of a {"user_ids"} segment (None for the other
    kinds). The stored segment of a user-id campaign keeps only their number: the ids become CampaignMember
    rows, and 100,000 of them need not be copied into every read of the campaign."""
    user_ids = spec.segment.get("user_ids")
    segment = {"user_ids": len(user_ids)} if user_ids is not None else spec.segment
    campaign = Campaign(
        producer=producer, name=spec.name, type=spec.type, data=spec.data, channels=spec.channels,
        segment=segment, schedule_at=spec.schedule_at, send_window=spec.send_window,
        throttle_per_second=spec.throttle_per_second, idempotency_key=spec.idempotency_key,
        request_hash=spec.fingerprint if spec.idempotency_key else "", status=CampaignStatus.SCHEDULED,
    )
    return campaign, user_ids


def campaign_create(producer, spec: CampaignSpec) -> tuple[Campaign, bool]:
    """Store the campaign (and the members of a {"user_ids"} segment), with its estimated recipients, and
    after commit start it (fanout.campaign_start) unless schedule_at is in the future. Returns the campaign
    and whether it is a replay of an earlier request with the same idempotency key and body."""
    with transaction.atomic():
        if spec.idempotency_key:
            previous = _idempotent_previous(producer, spec)
            if previous is not None:
                return previous, True
        campaign, user_ids = campaign_build(producer, spec)
        try:
            with transaction.atomic():  # a savepoint: a racing insert of the same key (SQLite) is looked up below
                campaign.save(force_insert=True)
        except IntegrityError:
            previous = _idempotent_previous(producer, spec)
            if previous is None:
                raise
            return previous, True
        if user_ids is not None:
            segments.segment_members_store(campaign, user_ids)
        campaign.estimated_recipients = segments.segment_count(campaign)
        campaign.save(update_fields=["estimated_recipients"])
        starts_now = not (spec.schedule_at and spec.schedule_at > timezone.now())
        if starts_now:
            transaction.on_commit(lambda: fanout.campaign_start(campaign), robust=True)
    if starts_now and transaction.get_autocommit():  # campaign_start has run: answer the status it set
        campaign.refresh_from_db(fields=["status"])
    return campaign, False


def _idempotent_previous(producer, spec: CampaignSpec) -> Campaign | None:
    """The campaign made earlier under this key, if any, when its body was the same. Raises
    IdempotencyKeyInFlight while another transaction holds the key, IdempotencyConflict on another body."""
    if not idempotency_key_lock(producer, spec.idempotency_key, IDEMPOTENCY_NAMESPACE):
        raise IdempotencyKeyInFlight(spec.idempotency_key)
    previous = Campaign.objects.filter(producer=producer, idempotency_key=spec.idempotency_key).first()
    if previous is not None and previous.request_hash != spec.fingerprint:
        raise IdempotencyConflict(spec.idempotency_key)
    return previous


def campaign_pause(campaign: Campaign) -> Campaign:
    """running or scheduled → paused: no chunk of it is routed and no delivery of it claimed from now on
    (campaigns/stops.py). Returns the campaign as stored after the move."""
    _move(campaign, "pause", status=CampaignStatus.PAUSED, paused_at=timezone.now())
    return _reloaded(campaign)


def campaign_resume(campaign: Campaign) -> Campaign:
    """paused → running, and the fan-out kicked again (it goes on from its cursor; claims are conditional, so
    nothing is sent twice). A campaign paused before it ever started goes back to scheduled, and is started
    at once when its schedule_at has passed."""
    with transaction.atomic():
        _move(campaign, "resume", status=Case(When(started_at__isnull=True, then=Value(CampaignStatus.SCHEDULED)),
                                               default=Value(CampaignStatus.RUNNING)))
        campaign = _reloaded(campaign)
        if campaign.status == CampaignStatus.RUNNING:
            transaction.on_commit(lambda: fanout.campaign_kick(campaign.id), robust=True)
        elif not (campaign.schedule_at and campaign.schedule_at > timezone.now()):
            transaction.on_commit(lambda: fanout.campaign_start(campaign), robust=True)
    return campaign


def campaign_cancel(campaign: Campaign) -> Campaign:
    """scheduled, running or paused → cancelled; after commit, the task notifier.campaign_cancel_rest
    cancels what of it has not been sent (campaign_cancel_rest). Its deliveries are not claimed from the
    moment of the cancel (campaigns/stops.py), so the task only tidies what would otherwise wait forever."""
    with transaction.atomic():
        _move(campaign, "cancel", status=CampaignStatus.CANCELLED, cancelled_at=timezone.now())
        campaign_id = campaign.id
        transaction.on_commit(lambda: _publish_cancel_rest(campaign_id), robust=True)
    return _reloaded(campaign)


def _move(campaign: Campaign, action: str, **changes) -> None:
    if Campaign.objects.filter(id=campaign.id, status__in=MOVES_FROM[action]).update(**changes) == 1:
        return
    status = Campaign.objects.filter(id=campaign.id).values_list("status", flat=True).first()
    raise CampaignMoveRefused(campaign.id, action, status)


def _reloaded(campaign: Campaign) -> Campaign:
    campaign.refresh_from_db()
    return campaign


def _publish_cancel_rest(campaign_id: uuid.UUID) -> None:
    """Publish the cancel task, within the request's broker deadline (pipeline/wake.py). If it is lost,
    beat's campaigns-tick publishes it again while the campaign has rows waiting (fanout.campaigns_tick)."""
    from notifier.tasks import campaign_cancel_rest as task

    publish_once("maintenance", task, (str(campaign_id),), flag=f"campaign-cancel:{campaign_id}")


def campaign_cancel_rest(campaign_id, after_recipient_id: int = 0, slice_size: int = CANCEL_SLICE,
                         seconds: float = CANCEL_TASK_SECONDS) -> tuple[int, int | None]:
    """Cancel the campaign's notifications that are not routed yet or still have a delivery waiting, in
    slices of `slice_size` by recipient id (the campaign-and-recipient unique index walks them in order),
    each slice one pipeline/cancel.notifications_cancel transaction. Stops after `seconds`: returns how many
    it cancelled and the recipient id to go on after, or None when none is left."""
    waiting = Delivery.objects.filter(notification=OuterRef("pk"), status__in=DELIVERY_WAITING_STATUSES)
    to_cancel = Notification.objects.filter(campaign_id=campaign_id).filter(
        Q(status__in=NOTIFICATION_OPEN_STATUSES) | Exists(waiting))
    deadline = time.monotonic() + seconds
    cancelled, cursor = 0, after_recipient_id
    while True:
        rows = list(to_cancel.filter(recipient_id__gt=cursor).order_by("recipient_id")
                    .values_list("id", "recipient_id")[:slice_size])
        if rows:
            notifications_cancel(Q(campaign_id=campaign_id, id__in=[id_ for id_, _ in rows]))
            cancelled += len(rows)
            cursor = rows[-1][1]
        if len(rows) < slice_size:
            return cancelled, None
        if time.monotonic() >= deadline:
            return cancelled, cursor


def campaign_progress(campaign: Campaign) -> dict:
    """The campaign's counters (CAMPAIGNS.md): targeted, eligible by channel, suppressed by reason and held
    from its chunks; sent, delivered, opened, clicked, failed, dead, cancelled and waiting from its
    deliveries; the chunks made and done, and percent_done. Two queries."""
    return campaigns_progress([campaign])[campaign.id]


def campaigns_progress(campaigns) -> dict:
    """campaign_progress of many campaigns (an admin page) in the same two queries, by campaign id."""
    by_id = {campaign.id: campaign for campaign in campaigns}
    progress = {id_: {"targeted": 0, "eligible": {}, "suppressed": {}, "held": 0,
                      **dict.fromkeys(DELIVERY_COUNTERS, 0), "chunks": {"created": c.chunks_created, "done": 0}}
                for id_, c in by_id.items()}
    if not by_id:
        return progress
    totals = dict.fromkeys(by_id, 0)
    chunks = CampaignChunk.objects.filter(campaign_id__in=by_id).values_list("campaign_id", "recipients", "counts",
                                                                            "status")
    for campaign_id, recipients, counts, status in chunks:
        entry = progress[campaign_id]
        entry["targeted"] += recipients
        counts_add(entry, counts or {})
        entry["chunks"]["done"] += status == CampaignChunk.DONE
    # One index-only scan of delivery_campaign (campaign, status) per campaign.
    deliveries = (Delivery.objects.filter(campaign_id__in=by_id).order_by().values_list("campaign_id", "status")
                  .annotate(count=Count("id")))
    for campaign_id, status, count in deliveries:
        totals[campaign_id] += count
        for counter, statuses in DELIVERY_COUNTERS.items():
            if status in statuses:
                progress[campaign_id][counter] += count
    for id_, entry in progress.items():
        entry["percent_done"] = _percent_done(by_id[id_], entry, totals[id_])
    return progress


def _percent_done(campaign: Campaign, progress: dict, deliveries: int) -> float:
    """How far it has come: the share of its estimated recipients routed, times the share of their
    deliveries that have ended (sent, failed, cancelled…). 100 once completed."""
    if campaign.status == CampaignStatus.COMPLETED:
        return 100.0
    if campaign.estimated_recipients:
        routed = min(1.0, progress["targeted"] / campaign.estimated_recipients)
    else:
        routed = 1.0 if campaign.fanned_out_at else 0.0
    ended = (deliveries - progress["waiting"]) / deliveries if deliveries else 1.0
    return round(100 * routed * ended, 1)

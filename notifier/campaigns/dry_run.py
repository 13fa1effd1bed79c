"""A campaign's dry run (POST /api/v1/campaigns with "dry_run": true): how many of its segment each
channel would reach, and why the others would not, without storing or sending anything.

    {"targeted": 1200, "eligible": {"push": 410, "email": 980}, "held": 20,
     "suppressed": {"not_opted_in": 150, "no_target": 25, "opted_out": 12, "email_suppressed": 1},
     "unknown_user_ids": 0, "sampled": false}

Every recipient is decided by the route step's own code (pipeline/route.notifications_decide with
dry_run=True: the same preferences, marketing opt-in, targets, email suppressions, quiet hours, digests,
fallbacks and rate limits, in the same order), on an in-memory Notification like the one the campaign's
chunk would make, and counted as the chunks count (campaigns/counts.decisions_count). Templates are
rendered as a chunk renders them, once per template and chunk (pipeline/render.SharedRenders), so one
that fails to render counts under `suppressed.render_failed`, as it would when the campaign runs. The dry
run counts no rate limit (the windows are only read) and records no metric.

The segment is read in chunks by recipient id, never whole. Above NOTIFIER_CAMPAIGN_DRY_RUN_EXACT_LIMIT
recipients, a random sample of that many is decided and the counts are scaled to the segment
("sampled": true, "sample_size"). Quiet hours and rate limits are those of `now`: a campaign scheduled
for later, or sent in a local-time window, meets the ones of its own moment.
"""
from __future__ import annotations

import random

from django.conf import settings
from django.utils import timezone

from notifier.campaigns.counts import counts_add, decisions_count
from notifier.campaigns.segments import id_batch_size, segment_count, segment_recipients, user_ids_recipient_ids
from notifier.models import Notification, Priority, Recipient
from notifier.pipeline.render import SharedRenders
from notifier.pipeline.route import notifications_decide


def campaign_dry_run(campaign, user_ids=None, now=None) -> dict:
    """The dry run of an unsaved (or saved) campaign: its type, data, channels and normalized segment are
    read. A {"user_ids": [...]} segment's members are not stored for a dry run: its ids are `user_ids`,
    or else the segment's own list; ids that are no recipient are counted in `unknown_user_ids`. `now`:
    the moment the decisions are made for (quiet hours, rate-limit windows); default now."""
    now = now or timezone.now()
    limit = settings.NOTIFIER_CAMPAIGN_DRY_RUN_EXACT_LIMIT
    unknown = 0
    if "user_ids" in campaign.segment:
        ids = list(dict.fromkeys(user_ids if user_ids is not None else campaign.segment["user_ids"]))
        recipient_ids = user_ids_recipient_ids(ids)
        unknown, targeted = len(ids) - len(recipient_ids), len(recipient_ids)
        if targeted > limit:
            recipient_ids = sorted(random.sample(recipient_ids, limit))
        chunks = _chunks_by_ids(recipient_ids)
        decided = len(recipient_ids)
    else:
        segment = segment_recipients(campaign)
        targeted = segment_count(campaign)
        if targeted > limit:
            # A uniform sample of `limit` ids: PostgreSQL keeps the top `limit` of a random order in
            # memory (a bounded heap), never the segment; the sample is then read by id like any chunk.
            sample = sorted(segment.order_by("?").values_list("id", flat=True)[:limit])
            chunks, decided = _chunks_by_ids(sample), len(sample)
        else:
            chunks, decided = _chunks_walked(campaign), targeted

    counts = {"eligible": dict.fromkeys(campaign.channels or campaign.type.default_channels or [], 0),
              "suppressed": {}, "held": 0}
    for recipients in chunks:
        counts_add(counts, _chunk_counts(campaign, recipients, now))
    answer = {"targeted": targeted, **counts, "unknown_user_ids": unknown, "sampled": decided < targeted}
    if answer["sampled"]:
        answer["sample_size"] = decided
        scale = targeted / decided if decided else 0
        for group in ("eligible", "suppressed"):
            answer[group] = {key: round(value * scale) for key, value in answer[group].items()}
        answer["held"] = round(answer["held"] * scale)
    return answer


def _chunk_counts(campaign, recipients: list[Recipient], now) -> dict:
    """The decisions of one chunk, counted: what the campaign's chunk task would record for them."""
    notifications = [
        Notification(producer_id=campaign.producer_id, type=campaign.type, recipient=recipient, campaign=campaign,
                     data=campaign.data, channels=list(campaign.channels or []), priority=Priority.LOW, due_at=now)
        for recipient in recipients
    ]
    notifications_decide(notifications, now, dry_run=True, renders=SharedRenders())
    return decisions_count(notification.decisions for notification in notifications)


def _chunks_walked(campaign):
    """The segment's recipients, a chunk at a time, by keyset on id (one query a chunk)."""
    size, cursor = settings.NOTIFIER_CAMPAIGN_CHUNK_SIZE, 0
    while True:
        recipients = list(segment_recipients(campaign, after_id=cursor).order_by("id")[:size])
        if not recipients:
            return
        yield recipients
        cursor = recipients[-1].id


def _chunks_by_ids(recipient_ids: list[int]):
    """The recipients of these ids (sorted), a chunk at a time: as many as one IN list may bind."""
    size = min(settings.NOTIFIER_CAMPAIGN_CHUNK_SIZE, id_batch_size())
    for start in range(0, len(recipient_ids), size):
        yield list(Recipient.objects.filter(id__in=recipient_ids[start:start + size]).order_by("id"))

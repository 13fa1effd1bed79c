"""Step 3: deliver. Claim due deliveries of one channel × priority, send them through the channel, record
each outcome.

A claim is a conditional update (queued → sending, stamped with a claim token), so a second run of the
same task, or a second worker, never sends a row twice. A claim is a lease: if the worker dies, the
sweeper returns the row to the queue after NOTIFIER_CLAIM_LEASE_SECONDS (counting the attempt).

Outcomes are recorded while the batch is still being sent, in groups of at most RECORD_GROUP_SIZE
(RECORD_GROUP_SIZE_LOW at low priority) or RECORD_INTERVAL_SECONDS, so a worker killed mid-batch leaves
unrecorded (and sends again on the next claim) only the sends in flight and the last group's outcomes,
not everything it had sent. Each write matches the
claim token: a worker that outlived its lease finds its rows given back to the queue (or claimed by
another) and changes nothing.
"""
from __future__ import annotations

import logging
import random
import time
import uuid
from collections import Counter
from datetime import timedelta

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import Count, Q
from django.utils import timezone

from notifier.campaigns.stops import campaigns_stopped_ids
from notifier.campaigns.throttle import throttle_split
from notifier.channels import CHANNELS
from notifier.db import row_new, rows_ids_draw, rows_insert, rows_update, rows_write_isolated
from notifier.log_format import delivery_log_context
from notifier.models import (
    DELIVERY_IN_FLIGHT_STATUSES,
    DELIVERY_SUCCESS_STATUSES,
    AttemptOutcome,
    DELIVERY_WAITING_STATUSES,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    Device,
    EmailSuppression,
    Notification,
    NotificationStatus,
    NotificationType,
    Priority,
    Recipient,
)
from notifier.pipeline.preferences import channel_verdict
from notifier.pipeline.route import notifications_fall_back
from notifier.pipeline.status import deliveries_mark_claimed, deliveries_move, deliveries_save_status, pending_events_release
from notifier.pipeline.wake import clear_flag, deliver_queue, wake_deliver
from notifier.providers.base import PermanentError, ProviderError, RateLimited, SendDeferred, SendResult

log = logging.getLogger(__name__)

CANCELLED_REASON = "cancelled by the producer"
_RECORDED_FIELDS = [
    "status", "status_reason", "provider", "provider_message_id", "last_error", "next_attempt_at", "claim_token",
    "sent_at", "failed_at", "attempts",  # a deferred send gives its attempt back
]
# What is written when a delivery's outcome cannot be: none of the fields the provider's answer filled.
_UNRECORDABLE_FIELDS = ["status", "last_error", "claim_token", "failed_at"]
# A group of outcomes is written when it has this many, or when its first is this old: a few queries per
# group, never one per delivery, and a kill re-sends at most a group plus the sends in flight.
RECORD_GROUP_SIZE = 50
RECORD_INTERVAL_SECONDS = 0.25
# Low priority (campaigns) records a whole claim's outcomes at once when they come at once (a SendGrid
# batch, in-app items): a group costs seven queries, and 20 groups per 1,000 deliveries were a third of
# the deliver step's time. The interval still bounds what a kill can leave unrecorded.
RECORD_GROUP_SIZE_LOW = 1000


def deliver_due(channel: str, priority: str, batch_size: int | None = None) -> int:
    """Claim and send batches of due deliveries; returns how many were claimed. High and medium priority
    send one batch per wake-up. Low priority (campaigns, bulk) keeps claiming full batches for up to
    NOTIFIER_DELIVER_DRAIN_SECONDS: a campaign's million deliveries then cost a few wake-ups per worker,
    not one message per batch (docs/architecture.md, "Throughput rules")."""
    batch_size = batch_size or (settings.NOTIFIER_DELIVER_BATCH_SIZE_LOW if priority == Priority.LOW
                                else settings.NOTIFIER_DELIVER_BATCH_SIZE)
    drain_until = time.monotonic() + (settings.NOTIFIER_DELIVER_DRAIN_SECONDS if priority == Priority.LOW else 0)
    clear_flag(deliver_queue(channel, priority))
    claimed = 0
    while True:
        deliveries = deliveries_claim(channel, priority, batch_size)
        claimed += len(deliveries)
        if len(deliveries) == batch_size:
            wake_deliver(channel, priority)  # more are due: let another worker take the next batch meanwhile
        if deliveries:
            deliveries_send(deliveries)
        if len(deliveries) < batch_size or time.monotonic() >= drain_until:
            return claimed


def deliveries_claim(channel: str, priority: str, limit: int) -> list[Delivery]:
    """Claim up to `limit` due deliveries for this process. Three queries, whatever the batch size; at
    low priority, a fourth once a second for the paused campaigns (campaigns/stops.py), whose rows wait."""
    token = uuid.uuid4()
    now = timezone.now()
    due = Delivery.objects.filter(status=DeliveryStatus.QUEUED, channel=channel, priority=priority,
                                  next_attempt_at__lte=now)
    if priority == Priority.LOW:
        stopped = campaigns_stopped_ids()
        if stopped:
            due = due.exclude(campaign_id__in=stopped)
    with transaction.atomic():
        ids = list(
            due.select_for_update(skip_locked=True)
            .order_by("next_attempt_at")
            .values_list("id", flat=True)[:limit]
        )
        if not ids:
            return []
        deliveries_mark_claimed(ids, token, now)
    return deliveries_claimed_load(token)


# What the deliver step never reads of a claimed delivery's notification and recipient: the routing's
# records and the segmenting attributes, a third of the JSON a claim would otherwise parse. The steps that
# need them (a fallback, a cancel) load their notifications themselves.
_UNREAD_WHEN_SENDING = ("notification__decisions", "notification__channels", "notification__escalation",
                        "notification__fallback_channels", "notification__recipient__attributes")


def deliveries_claimed_load(token) -> list[Delivery]:
    """The deliveries of a claim, each with its notification, recipient, type and device loaded, oldest
    first (the claim's update moved the rows on disk). Two queries: the types, a handful for a whole
    claim, are read once rather than joined and built again for every row."""
    deliveries = list(Delivery.objects.filter(claim_token=token).select_related("notification__recipient", "device")
                      .defer(*_UNREAD_WHEN_SENDING).order_by("next_attempt_at", "id"))
    types = NotificationType.objects.in_bulk({d.notification.type_id for d in deliveries})
    for delivery in deliveries:
        Notification.type.field.set_cached_value(delivery.notification, types[delivery.notification.type_id])
    return deliveries


def deliveries_send(deliveries: list[Delivery], *, new: bool = False, still_open: frozenset = frozenset()) -> None:
    """Send the deliveries of one claim (all of one channel), recording outcomes in groups as sends
    complete. `new`: the deliveries are not stored yet, only made claimed in memory (a campaign chunk's
    in-app items, sent in the transaction that routes them: pipeline/route.py): each is stored with its
    outcome, in one insert, instead of inserted and then updated. `still_open`: ids of the deliveries'
    notifications that the caller knows to have other deliveries waiting (that chunk's emails): they are
    not checked for closing, which would lock them to find nothing to close."""
    if new:
        rows_ids_draw(Delivery, deliveries)  # the send keys its work by delivery id, before any row exists
    token = deliveries[0].claim_token
    group: list[tuple[Delivery, object]] = []
    now = timezone.now()
    live = []
    unwanted = send_time_refusals(deliveries)
    throttled = throttle_split(deliveries)
    stopped = campaigns_stopped_ids() if any(d.campaign_id for d in deliveries) else frozenset()
    for delivery in deliveries:
        expires_at = delivery.notification.expires_at
        if delivery.campaign_id in stopped or delivery.id in throttled:
            # Claimed as its campaign was paused, or over the campaign's throttle: back to the queue, no
            # attempt spent (a paused campaign's rows stay unclaimed until it resumes).
            wait = throttled.get(delivery.id, 0)
            delivery.status, delivery.claim_token, delivery.attempts = DeliveryStatus.QUEUED, None, delivery.attempts - 1
            delivery.next_attempt_at = now + timedelta(seconds=wait)
            delivery.last_error = (f"campaign throttle: waiting {wait:.2f} s" if wait
                                   else "campaign paused: waiting for it to resume")
            group.append((delivery, None))
        elif delivery.id in unwanted:
            # Routed before the user unsubscribed or the address bounced: not sent, and no attempt spent.
            delivery.status, delivery.claim_token = DeliveryStatus.SUPPRESSED, None
            delivery.status_reason, delivery.attempts = f"{unwanted[delivery.id]} (at send time)", delivery.attempts - 1
            group.append((delivery, None))
        elif delivery.notification.cancelled_at:
            # Back in the queue after its notification was cancelled (a worker died mid-send): never resent.
            delivery.status, delivery.claim_token = DeliveryStatus.CANCELLED, None
            delivery.status_reason = CANCELLED_REASON
            group.append((delivery, None))
        elif expires_at and expires_at <= now:
            delivery.status = DeliveryStatus.EXPIRED
            delivery.last_error = f"expired at {expires_at.isoformat()} before it could be sent"
            delivery.failed_at, delivery.claim_token = now, None
            group.append((delivery, None))
        else:
            live.append(delivery)
    group_started = time.monotonic()
    low = deliveries[0].priority == Priority.LOW
    group_size = RECORD_GROUP_SIZE_LOW if low else RECORD_GROUP_SIZE
    for index, outcome in CHANNELS[deliveries[0].channel].deliver(live):
        delivery = live[index]
        _apply_outcome(delivery, outcome, timezone.now())
        _log_outcome(delivery, outcome)
        if not group:
            group_started = time.monotonic()
        group.append((delivery, outcome))
        if len(group) >= group_size or time.monotonic() - group_started >= RECORD_INTERVAL_SECONDS:
            outcomes_record(group, token, new=new, still_open=still_open)
            group = []
    outcomes_record(group, token, new=new, still_open=still_open)
    if low:
        statuses = Counter(d.status for d in deliveries)
        log.info("deliver: %s.low: %s", deliveries[0].channel,
                 ", ".join(f"{count} {status}" for status, count in sorted(statuses.items())))


def send_time_refusals(deliveries: list[Delivery]) -> dict[int, str]:
    """The email deliveries that must not go out any more, by id, with why: the address bounced or the
    user opted out since the route step decided (a retry, a hold or a full queue can be hours later). The
    route step's own checks, again at the last moment, for the channel where the law asks for it
    (unsubscribe before the next send; RFC 8058). One query per claim, for email only."""
    emails = [d for d in deliveries if d.channel == "email"]
    if not emails:
        return {}
    suppressed = {s.address: s for s in EmailSuppression.objects.filter(address__in={d.target.lower() for d in emails})}
    refusals = {}
    for delivery in emails:
        suppression = suppressed.get(delivery.target.lower())
        verdict = channel_verdict(delivery.notification.recipient, delivery.notification.type, "email")
        if suppression is not None:
            refusals[delivery.id] = suppression.describe()
        elif not verdict.allowed:
            refusals[delivery.id] = verdict.reason
    return refusals


def outcomes_record(group: list[tuple[Delivery, object]], token, *, new: bool = False,
                    still_open: frozenset = frozenset()) -> None:
    """Write a group of (delivery, outcome) where the claim `token` still holds, then the outcomes' side
    effects (gone targets, finished notifications) for the rows written. A constant number of queries per
    group. A row whose claim was lost (the sweeper gave it back to the queue) is logged and left alone; a
    row the database cannot store (a provider's id too long for its column) fails alone, permanently.

    If the database ends the connection (a failover, a pooler restart, pg_terminate_backend) or fails the
    write, it is made once more on a new connection: these messages were sent, and an outcome left
    unwritten would have them sent again when the lease ends. Writing twice is harmless: the second try
    matches no claim the first one wrote. `new`, `still_open`: as deliveries_send takes them."""
    if not group:
        return
    if new:  # in the caller's transaction, which also holds the rows' notifications: no second try
        _outcomes_write(group, token, new=True, still_open=still_open)
        return
    try:
        _outcomes_write(group, token)
    except (OperationalError, InterfaceError) as error:
        # Django has rolled the write back; closing makes sure the second try runs on a new session.
        log.warning("dispatch: the database failed while recording %d outcomes (%s); recording them again on "
                    "a new connection", len(group), str(error).strip())
        connection.close()
        _outcomes_write(group, token)


def _outcomes_write(group: list[tuple[Delivery, object]], token, new: bool = False,
                    still_open: frozenset = frozenset()) -> None:
    deliveries = [delivery for delivery, _ in group]
    written: set = set()

    def write(rows, fields=_RECORDED_FIELDS):
        written.update(deliveries_save_status(rows, DeliveryStatus.SENDING, fields, where={"claim_token": token},
                                              insert=new))

    with transaction.atomic():
        refused = rows_write_isolated(deliveries, write)
        for index, error in refused.items():
            delivery = deliveries[index]
            log.error("dispatch: the outcome of delivery %s (%s) could not be recorded: %s", delivery.id,
                      delivery.status, error, extra=delivery_log_context(delivery))
            delivery.last_error = f"the outcome ({delivery.status}) could not be recorded: {str(error).strip()}"
            delivery.status, delivery.failed_at = DeliveryStatus.FAILED, timezone.now()
            if new:  # stored whole: without what the provider's answer filled in
                delivery.provider_message_id, delivery.sent_at = "", None
        write([deliveries[index] for index in refused], _UNRECORDABLE_FIELDS)
        for delivery in deliveries:
            if delivery.id not in written:
                log.warning("dispatch: lost the claim on delivery %s of notification %s (its lease ran out and "
                            "the sweeper gave it back to the queue): its outcome here (%s) is not recorded",
                            delivery.id, delivery.notification_id, delivery.status,
                            extra=delivery_log_context(delivery))
        kept = [(d, o) for d, o in group if d.id in written]
        rows_insert(DeliveryAttempt, [attempt_of(d, o) for d, o in kept if attempt_recorded(d, o)])
        if not new:  # nobody can have reported on a row that did not exist
            pending_events_release([d for d, o in kept if isinstance(o, SendResult)])
        targets_gone([d for d, o in kept if isinstance(o, ProviderError) and o.target_gone])
        notifications_refresh_status({d.notification_id for d, _ in kept} - still_open)


def attempt_recorded(delivery: Delivery, outcome) -> bool:
    """Whether this outcome gets a history row (DeliveryAttempt). Not when no attempt was made (suppressed
    at send time, or given back to the queue for its campaign: paused, over its throttle), nor for a
    success at the first attempt: the delivery row tells all of that (status, provider, provider message
    id, sent_at, attempts 1) and its events the moments, and it is most of a campaign's deliveries, where
    the row would be a seventh of what each one writes. Every attempt of a delivery that needed more than
    one is recorded, its final success included."""
    if outcome is None:
        return delivery.status not in (DeliveryStatus.SUPPRESSED, DeliveryStatus.QUEUED)
    return not (isinstance(outcome, SendResult) and delivery.attempts == 1)


def attempt_of(delivery: Delivery, outcome) -> DeliveryAttempt:
    """The history row of the attempt that just ended with `outcome` (None: it expired before sending)."""
    attempt = row_new(DeliveryAttempt, delivery=delivery, number=delivery.attempts, provider=delivery.provider,
                      at=timezone.now())
    if outcome is None:
        attempt.outcome, attempt.message = AttemptOutcome.EXPIRED, delivery.last_error
    elif isinstance(outcome, SendResult):
        attempt.outcome = AttemptOutcome.SENT
    else:
        attempt.outcome, attempt.provider_code, attempt.message = outcome.kind, outcome.code[:64], str(outcome)
    return attempt


def retry_delay(priority: str, attempts: int) -> float:
    """Exponential backoff with full jitter (AWS architecture blog, "Exponential Backoff And Jitter")."""
    policy = settings.NOTIFIER_RETRY_POLICY[priority]
    ceiling = min(policy["max_delay"], policy["base_delay"] * 2 ** (attempts - 1))
    return random.uniform(0, ceiling)


def _apply_outcome(delivery: Delivery, outcome, now) -> None:
    delivery.claim_token = None
    if isinstance(outcome, SendResult):
        delivery.status = outcome.status
        delivery.provider_message_id = outcome.provider_message_id
        delivery.sent_at = now
        delivery.last_error = ""
        return
    if isinstance(outcome, SendDeferred):
        # Nothing was sent (an open circuit, the provider's send rate): wait, and give the attempt back.
        delivery.status = DeliveryStatus.QUEUED
        delivery.next_attempt_at = outcome.until
        delivery.attempts -= 1
        delivery.last_error = str(outcome)
        return
    delivery.last_error = f"{delivery.provider or 'provider'} {outcome.kind}: {outcome}"
    max_attempts = settings.NOTIFIER_RETRY_POLICY[delivery.priority]["max_attempts"]
    if isinstance(outcome, PermanentError):
        delivery.status = DeliveryStatus.FAILED
        delivery.failed_at = now
    elif delivery.attempts >= max_attempts:
        delivery.status = DeliveryStatus.DEAD
        delivery.failed_at = now
        delivery.last_error += f" (gave up after {delivery.attempts} attempts)"
    else:
        if isinstance(outcome, RateLimited) and outcome.retry_after is not None:
            delay = outcome.retry_after
        else:
            delay = retry_delay(delivery.priority, delivery.attempts)
        delivery.status = DeliveryStatus.QUEUED
        delivery.next_attempt_at = now + timedelta(seconds=delay)


def _log_outcome(delivery: Delivery, outcome) -> None:
    if isinstance(outcome, SendResult):
        # A campaign's million successes are one summary line per claim (deliveries_send), not a million.
        level = logging.DEBUG if delivery.priority == Priority.LOW else logging.INFO
        if not log.isEnabledFor(level):
            return
        log.log(
            level,
            "%s: %s delivery %s of notification %s to %s (attempt %s)", delivery.provider, outcome.status,
            delivery.id, delivery.notification_id, delivery.target[:24], delivery.attempts,
            extra=delivery_log_context(delivery),
        )
    else:
        log.warning(
            "%s: %s error on delivery %s of notification %s (attempt %s): %s -> %s", delivery.provider,
            outcome.kind, delivery.id, delivery.notification_id, delivery.attempts, outcome, delivery.status,
            extra=delivery_log_context(delivery),
        )


def targets_gone(deliveries: list[Delivery]) -> None:
    """The provider said these targets are gone for good: never send to them again. Two queries at most
    for the devices and one for the phones, whatever their number."""
    now = timezone.now()
    tokens = {d.target: d.last_error[:100] for d in deliveries if d.channel == "push"}
    devices = list(Device.objects.filter(token__in=tokens, active=True))
    for device in devices:
        device.active, device.deactivated_at, device.deactivated_reason = False, now, tokens[device.token]
    rows_update(devices, ["active", "deactivated_at", "deactivated_reason"], where={"active": True})
    phones = {d.target for d in deliveries if d.channel == "sms"}
    if phones:
        Recipient.objects.filter(phone__in=phones, sms_opted_out_at=None).update(sms_opted_out_at=now)
    for device in devices:
        log.info("push: deactivated device %s… (%s)", device.token[:12], device.deactivated_reason)


# Closed on their deliveries' first outcomes: a provider's later failure report reopens them.
_NOTIFICATION_CLOSED_STATUSES = (NotificationStatus.DELIVERED, NotificationStatus.PARTIALLY_DELIVERED,
                                 NotificationStatus.FAILED)


def notifications_reopen_on_late_failures(changes) -> None:
    """A notification closed on its deliveries' first outcomes (sent counts as a success) is reopened and
    closed again when a provider later reports one of them failed or bounced (Twilio's `undelivered`,
    SendGrid's bounce): its status then says so, and its fallback channels run. `changes` are the
    StatusChanges a webhook applied (pipeline/status.py)."""
    notification_ids = {c.delivery.notification_id for c in changes
                        if c.status in (DeliveryStatus.FAILED, DeliveryStatus.BOUNCED)}
    if notification_ids:
        Notification.objects.filter(id__in=notification_ids, status__in=_NOTIFICATION_CLOSED_STATUSES).update(
            status=NotificationStatus.PROCESSING)
        notifications_refresh_status(notification_ids)


def notifications_refresh_status(notification_ids) -> None:
    """Close the notifications whose deliveries have all finished: delivered, partially delivered, failed,
    or cancelled (nothing succeeded and something was cancelled), or, when none succeeded and a fallback
    channel is left, start that fallback instead (pipeline/fallback.py). Two queries and at most five
    updates, whatever the number of notifications, and a fixed number more when some fall back.

    The open notifications are locked first. Two workers recording the last two deliveries of one
    notification at once would otherwise each count the other's as still in flight (not committed yet),
    and neither would close it; with the lock, the second counts after the first has committed. A
    cancel takes the same lock (pipeline/cancel.py), so a delivery this batch puts back in the queue for a
    retry is cancelled here if its notification was cancelled while it was being sent."""
    with transaction.atomic(savepoint=False):
        locked = list(
            Notification.objects.select_for_update()
            .filter(id__in=notification_ids, status=NotificationStatus.PROCESSING)
            .order_by("id")  # one lock order for every worker: no deadlock between overlapping batches
            .values_list("id", "escalate_at", "cancelled_at")
        )
        cancelled_ids = [id_ for id_, _, cancelled_at in locked if cancelled_at]
        if cancelled_ids:
            deliveries_move({"notification_id__in": cancelled_ids, "status__in": DELIVERY_WAITING_STATUSES},
                            DeliveryStatus.CANCELLED, fields={"status_reason": CANCELLED_REASON})
        # A pending escalation keeps its notification open; whoever ends it refreshes it (escalation.py).
        open_ids = [id_ for id_, escalate_at, _ in locked if escalate_at is None]
        if open_ids:
            _notifications_close_finished(open_ids)


def _notifications_close_finished(notification_ids: list) -> None:
    counts = (
        Delivery.objects.filter(notification_id__in=notification_ids)
        .values("notification_id")
        .annotate(
            in_flight=Count("id", filter=Q(status__in=DELIVERY_IN_FLIGHT_STATUSES)),
            succeeded=Count("id", filter=Q(status__in=DELIVERY_SUCCESS_STATUSES)),
            cancelled=Count("id", filter=Q(status=DeliveryStatus.CANCELLED)),
            # A suppressed delivery was never meant to go (a rate limit): it neither succeeds nor fails. A
            # replayed dead letter is history: its replay counts instead (pipeline/replay.py).
            total=Count("id", filter=~Q(status=DeliveryStatus.SUPPRESSED) & Q(replayed_as=None)),
        )
    )
    finished: dict[str, list] = {}
    for row in counts:
        if row["in_flight"]:
            continue
        if not row["total"]:  # every delivery was suppressed (at send time: routed, then unsubscribed)
            finished.setdefault(NotificationStatus.SUPPRESSED, []).append(row["notification_id"])
            continue
        if row["succeeded"] == row["total"]:
            status = NotificationStatus.DELIVERED
        elif row["succeeded"]:
            status = NotificationStatus.PARTIALLY_DELIVERED
        elif row["cancelled"]:  # nothing went out, and the producer stopped the rest
            status = NotificationStatus.CANCELLED
        else:
            status = NotificationStatus.FAILED
        finished.setdefault(status, []).append(row["notification_id"])
    if finished.get(NotificationStatus.FAILED):
        # Nothing reached these: one with a fallback channel left goes on to it, and stays open.
        falling_back = notifications_fall_back(finished[NotificationStatus.FAILED])
        finished[NotificationStatus.FAILED] = [i for i in finished[NotificationStatus.FAILED] if i not in falling_back]
    now = timezone.now()
    for status, ids in finished.items():
        Notification.objects.filter(id__in=ids, status=NotificationStatus.PROCESSING).update(
            status=status, completed_at=now
        )

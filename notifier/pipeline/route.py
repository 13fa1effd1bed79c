"""Step 2: route. Decide, for each due notification, which channels and targets it goes to, render its
templates, and create one Delivery per target.

A batch is claimed with SELECT … FOR UPDATE SKIP LOCKED and routed in the same transaction: if the worker
dies, the transaction rolls back and the rows are due again; two workers never route the same row.

For each channel, in order: the user's preferences (pipeline/preferences.py), a reachable target (for
email, an address SendGrid has not reported dead: channels/email.py, read once per batch), a template,
quiet hours (pipeline/quiet_hours.py) and the user's rate limits (pipeline/rate_limits.py, one Redis round
trip per batch; with Redis unreachable the batch is admitted, as the producer quota admits requests, and
each decision says so). Every channel's outcome is recorded in Notification.decisions with its reason;
a held or suppressed Delivery also carries it in status_reason.

Those per-channel rules are one function, `_route_channel`, used by the first routing and by every later
step that routes a notification on one more channel (`notifications_route_step`): a fallback
(pipeline/fallback.py: at routing when a primary channel has no target, or when the deliver step finds
that nothing reached the user) and an escalation (pipeline/escalation.py: when beat finds the in-app item
still unread). Routing also stores the fallback channels the notification will use and, when it has an
escalation and an in-app delivery, the moment it escalates (Notification.escalate_at).
"""
from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from datetime import timedelta

import redis
from django.conf import settings
from django.db import DatabaseError, transaction
from django.utils import timezone

from notifier import metrics
from notifier.channels import CHANNELS
from notifier.channels.email import email_suppressions_load
from notifier.db import rows_insert, rows_update
from notifier.models import (
    NOTIFICATION_OPEN_STATUSES,
    Channel,
    Delivery,
    DeliveryStatus,
    Device,
    Notification,
    NotificationStatus,
    Priority,
    RateLimitAction,
)
from notifier.pipeline import digest
from notifier.pipeline.deliveries import active_devices, deliveries_build
from notifier.pipeline.fallback import (
    FALLBACK,
    fallback_channels_resolve,
    fallback_due,
    fallback_next_channel,
    fallback_reason,
)
from notifier.pipeline.preferences import channel_verdict
from notifier.pipeline.quiet_hours import describe_release, quiet_hours_release_at
from notifier.pipeline.rate_limits import LimitCheck, rate_limits_check, rate_limits_peek
from notifier.pipeline.render import (
    RenderError,
    SharedRenders,
    active_templates,
    render_failed_deliveries,
    template_choose,
    template_render,
)
from notifier.pipeline.wake import clear_flag, route_queue, wake_deliver, wake_route

log = logging.getLogger(__name__)

# An escalation waiting for its moment (Notification.escalate_at): the decision each of its channels gets
# at routing, and the start of that decision's reason.
ESCALATION = "escalation"
ESCALATION_PENDING = "escalation_pending"
ESCALATION_PENDING_REASON = "escalation: sent if the in-app item is still unread at"


def route_due(priority: str, batch_size: int | None = None) -> int:
    """Route one batch of due notifications of one priority; returns how many were taken."""
    batch_size = batch_size or settings.NOTIFIER_ROUTE_BATCH_SIZE
    clear_flag(route_queue(priority))
    with transaction.atomic():
        notifications = list(
            Notification.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(status__in=NOTIFICATION_OPEN_STATUSES, priority=priority, due_at__lte=timezone.now())
            .select_related("type", "recipient")
            .order_by("due_at")[:batch_size]
        )
        if len(notifications) == batch_size:
            wake_route(priority)  # more are due: let another worker take the next batch meanwhile
        if notifications:
            notifications_route(notifications)
    return len(notifications)


def notifications_route(notifications: list[Notification], *, new: bool = False) -> list[Delivery]:
    """Create the deliveries of some notifications and record each channel's decision. Runs in the
    caller's transaction; wakes the deliver queues after commit. A fixed number of queries per batch.
    `new`: the notifications are not stored yet (a campaign chunk's): they are inserted as routed, in one
    statement, instead of being inserted first and updated after."""
    now = timezone.now()
    renders = SharedRenders() if new else None  # a chunk's notifications share the campaign's data
    deliveries = notifications_decide(notifications, now, renders=renders)
    if new:  # a campaign chunk's: routed once, in the transaction that marks its chunk done
        inbox_now = _claimed_for_inbox_now(deliveries, now)
        rows_insert(Notification, notifications)
        sent_now = {id(delivery) for delivery in inbox_now}
        rows_insert(Delivery, [d for d in deliveries if id(d) not in sent_now])
        if inbox_now:
            from notifier.pipeline.dispatch import deliveries_send

            waiting = frozenset(d.notification_id for d in deliveries if id(d) not in sent_now
                                and d.status in (DeliveryStatus.QUEUED, DeliveryStatus.HELD))
            deliveries_send(inbox_now, new=True, still_open=waiting)  # stored with their outcomes
    else:
        rows_update(notifications, ["status", "decisions", "routed_at", "completed_at", "fallback_channels",
                                    "escalate_at"])
        # ignore_conflicts: a Delivery is unique per notification × channel × target: routing twice is harmless.
        rows_insert(Delivery, deliveries, ignore_conflicts=True)
    _wake_after_commit(deliveries)
    return deliveries


def _claimed_for_inbox_now(deliveries: list[Delivery], now) -> list[Delivery]:
    """The in-app deliveries of a campaign chunk that are due now, made claimed (status sending, a claim
    token, the attempt counted) so that the chunk delivers them itself, through the deliver step's own
    deliveries_send(new=True), in its transaction: an inbox item is a row like the notification, and a
    round trip through a queue and a worker's claim would cost more than writing it (half a campaign's
    deliveries, 1 ms each there). Held ones (quiet hours, a local-time window) wait for beat as any other."""
    claimed = [d for d in deliveries if d.channel == Channel.IN_APP and d.status == DeliveryStatus.QUEUED
               and d.next_attempt_at <= now]
    token = uuid.uuid4()
    for delivery in claimed:
        delivery.status, delivery.claim_token, delivery.claimed_at, delivery.attempts = (
            DeliveryStatus.SENDING, token, now, 1)
    return claimed


def notifications_decide(notifications: list[Notification], now, *, dry_run: bool = False,
                         renders=None) -> list[Delivery]:
    """Every routing decision of some notifications, in memory: each one's decisions, status, fallback
    channels and escalation are set on it, and its deliveries returned unsaved. Reads the devices,
    templates and email suppressions of the batch (three queries) and the rate limits (one Redis round
    trip); writes only the digest batches the notifications join.

    `dry_run`: decide as routing would, with no effect (a campaign's dry run, notifier/campaigns/
    dry_run.py): templates are rendered as routing renders them (a template that fails counts as failed),
    the rate limits are read and not counted (rate_limits_peek), no digest batch is opened and no metric
    is counted. `renders` (SharedRenders) renders each template once for a batch that shares its data (a
    campaign chunk, its dry run)."""
    devices = active_devices([n.recipient_id for n in notifications])
    templates = active_templates(n.type_id for n in notifications)
    email_suppressions_load([n.recipient for n in notifications])
    created = {notification.id: _route_one_guarded(notification, devices[notification.recipient_id], templates, now,
                                                   dry_run=dry_run, renders=renders)
               for notification in notifications}
    _apply_rate_limits(notifications, created, now, dry_run=dry_run)
    if not dry_run:
        digest.digests_collect(notifications, now)
    for notification in notifications:
        notification.fallback_channels = fallback_channels_resolve(notification)
    _escalations_plan(notifications, created, now)
    # A primary channel with no target (or whatever reached no one already) goes on to the fallback now.
    _fallbacks_route(notifications, created, devices, templates, now, dry_run=dry_run, renders=renders)
    deliveries = []
    for notification in notifications:
        deliveries.extend(created[notification.id])
        if notification.status != NotificationStatus.EXPIRED:
            notification.status = _status_after_routing(created[notification.id], notification.decisions)
        notification.routed_at = now
        if notification.status != NotificationStatus.PROCESSING:
            notification.completed_at = now
    return deliveries


def _route_one_guarded(notification: Notification, devices: list[Device], templates: dict, now,
                       dry_run: bool = False, renders=None) -> list[Delivery]:
    """_route_one, with an unexpected error recorded as this notification's failure: the batch's other
    notifications are routed, not rolled back with it and retried forever. A database error still
    raises: the transaction is lost then, and the whole batch is due again."""
    try:
        return _route_one(notification, devices, templates, now, dry_run=dry_run, renders=renders)
    except DatabaseError:
        raise
    except Exception as error:
        log.exception("route: notification %s failed to route", notification.id,
                      extra={"notification_id": str(notification.id), "producer": notification.producer_id})
        notification.decisions = [{"channel": "*", "decision": "failed",
                                   "reason": f"routing error: {type(error).__name__}: {error}"}]
        return []


def _route_one(notification: Notification, devices: list[Device], templates: dict, now,
               dry_run: bool = False, renders=None) -> list[Delivery]:
    notification.decisions = []

    if notification.expires_at and notification.expires_at <= now:
        notification.status = NotificationStatus.EXPIRED
        notification.decisions.append({"channel": "*", "decision": "expired",
                                       "reason": f"expired at {notification.expires_at.isoformat()} before it was routed"})
        return []

    channel_names = notification.channels or notification.type.default_channels
    if not isinstance(channel_names, list):
        notification.decisions.append({"channel": "*", "decision": "failed", "reason":
                                       f"type {notification.type.key}: default_channels is not a list of channels"})
        return []
    release_at = _quiet_hours_release_at(notification, now)
    deliveries = []
    for channel_name in channel_names:
        created, decision = _route_channel(notification, channel_name, devices, templates, release_at, now,
                                           dry_run=dry_run, renders=renders)
        deliveries.extend(created)
        notification.decisions.append(decision)
    return deliveries


def _quiet_hours_release_at(notification: Notification, now):
    """When the user's quiet hours end, if they are in them now and the notification waits for them."""
    if notification.priority == Priority.HIGH or notification.type.critical:
        return None
    recipient = notification.recipient
    return quiet_hours_release_at(now, recipient.quiet_hours_start, recipient.quiet_hours_end, recipient.timezone)


def _route_channel(notification: Notification, channel_name, devices: list[Device], templates: dict, release_at,
                   now, digests: bool = True, dry_run: bool = False, renders=None) -> tuple[list[Delivery], dict]:
    """One channel of one notification, by the routing rules in order: its deliveries (unsaved) and its
    decision. The first routing and every later step (a fallback, an escalation) decide a channel here;
    `digests=False` leaves out the digest (a later step is late already). `dry_run`: no metric is
    counted. `renders` (SharedRenders) renders each template once for a batch that shares its data."""
    def decided(decision: str, reason: str = "", **extra) -> dict:
        return {"channel": str(channel_name), "decision": decision, "reason": reason, **extra}

    channel = CHANNELS.get(channel_name) if isinstance(channel_name, str) else None
    if channel is None:  # the API and admin refuse these; a row edited around them must not raise
        return [], decided("failed", f"unknown channel {channel_name!r}; known channels: {', '.join(CHANNELS)}")
    recipient, notification_type = notification.recipient, notification.type
    verdict = channel_verdict(recipient, notification_type, channel_name)
    if not verdict.allowed:
        if not dry_run:
            metrics.route_suppressed_count(channel_name, verdict.reason)
        return [], decided("suppressed", verdict.reason)
    targets, reason = channel.targets(recipient, devices)
    if not targets:
        return [], decided("skipped", reason)
    template = template_choose(templates, notification.type_id, channel_name, recipient.language,
                               notification_type.default_language)
    if template is None:
        return [], decided("skipped", f"no active {channel_name} template for type {notification_type.key}")
    window = digest.digest_window(notification, channel_name, recipient) if digests else 0
    if window:  # collected into the user's digest; beat sends it when the window ends
        return [], decided("digested", f"collected into a digest sent at the end of its {window} s window",
                           window=window)
    try:
        render = renders.render if renders is not None else _render_alone
        content = render(template, notification_type, notification.data, recipient, notification.id)
    except RenderError as error:
        return (render_failed_deliveries(notification, channel_name, targets, template, error, now),
                decided("failed", str(error), targets=len(targets), template_version=template.version))
    release_at, status_reason = _hold_until(notification, channel_name, release_at, now)
    held = release_at is not None
    deliveries = deliveries_build(
        notification, channel_name, targets, template, content=content,
        status=DeliveryStatus.HELD if held else DeliveryStatus.QUEUED, status_reason=status_reason,
        next_attempt_at=release_at if held else now,
    )
    extra = {"release_at": release_at.isoformat()} if held else {}
    if verdict.reason:  # a critical type, sent despite an opt-out
        extra["note"] = verdict.reason
    return deliveries, decided("held" if held else "queued", status_reason, targets=len(targets),
                               template_version=template.version, language=template.language, **extra)


def _render_alone(template, notification_type, data, recipient, notification_id) -> dict:
    return template_render(template, notification_type, data, recipient=recipient, notification_id=notification_id)


def _hold_until(notification: Notification, channel_name: str, quiet_release_at, now) -> tuple:
    """When this channel's deliveries may go and why they wait, or (None, "") to send now: a campaign's
    local-time window (`send_at`, set by its chunk: campaigns/windows.py), with quiet hours on top of it,
    or the quiet hours the user is in now."""
    quiet_channel = channel_name in settings.NOTIFIER_QUIET_HOURS_CHANNELS
    zone_name = notification.recipient.timezone
    send_at = getattr(notification, "send_at", None)
    if send_at is not None and send_at > now:
        quiet_then = _quiet_hours_release_at(notification, send_at) if quiet_channel else None
        if quiet_then is not None:
            return quiet_then, f"held for quiet hours until {describe_release(quiet_then, zone_name)}"
        return send_at, f"held for the campaign's send window until {describe_release(send_at, zone_name)}"
    if quiet_release_at is not None and quiet_channel:
        return quiet_release_at, f"held for quiet hours until {describe_release(quiet_release_at, zone_name)}"
    return None, ""


def notifications_route_step(step: str, plans: list[tuple[Notification, str, str]], devices, templates: dict,
                             now, dry_run: bool = False, renders=None) -> dict[object, list[Delivery]]:
    """Route notifications on one more channel each, after their first routing: `plans` are
    (notification, channel, why). The channel is decided by the same rules as at first routing
    (_route_channel, then the rate limits), never digested; its decision is tagged `step`, and its reason
    starts with `why`, also kept as its `cause`. Returns the new deliveries (unsaved) by notification id."""
    created: dict = defaultdict(list)
    decided = []
    email_suppressions_load([notification.recipient for notification, _, _ in plans])
    for notification, channel_name, why in plans:
        if notification.expires_at and notification.expires_at <= now:
            deliveries, decision = [], {"channel": channel_name, "decision": "expired",
                                        "reason": f"expired at {notification.expires_at.isoformat()}"}
        else:
            deliveries, decision = _route_channel(notification, channel_name, devices[notification.recipient_id],
                                                  templates, _quiet_hours_release_at(notification, now), now,
                                                  digests=False, dry_run=dry_run, renders=renders)
        decision["step"] = step
        notification.decisions.append(decision)
        created[notification.id].extend(deliveries)
        decided.append((decision, why))
    _apply_rate_limits(list({n.id: n for n, _, _ in plans}.values()), created, now, dry_run=dry_run)
    for decision, why in decided:  # after the rate limits, which may replace a decision's reason
        decision["reason"] = why + (f"; {decision['reason']}" if decision["reason"] else "")
        decision["cause"] = why
    return created


def _fallbacks_route(notifications: list[Notification], deliveries: dict, devices, templates: dict,
                     now, dry_run: bool = False, renders=None) -> list[Delivery]:
    """Route the next fallback channel of each notification whose deliveries so far reached no one, and
    the next again while a fallback reaches no one at routing (no target, opted out). `deliveries` maps
    each notification's id to its deliveries so far; the new ones are added. Returns the new ones."""
    created = []
    due = [n for n in notifications if fallback_due(n, deliveries[n.id])]
    while due:  # each round decides one more fallback channel of each: it ends when none is left
        plans = [(n, fallback_next_channel(n), f"fallback: {fallback_reason(n, deliveries[n.id])}") for n in due]
        step = notifications_route_step(FALLBACK, plans, devices, templates, now, dry_run=dry_run, renders=renders)
        for notification in due:
            deliveries[notification.id] = [*deliveries[notification.id], *step[notification.id]]
            created.extend(step[notification.id])
        due = [n for n in due if fallback_due(n, deliveries[n.id])]
    return created


def _escalations_plan(notifications: list[Notification], created: dict, now) -> None:
    """Set the moment each notification with an `escalation` escalates: its delay after its in-app item
    is due (now, or when quiet hours release it). Beat routes the escalation's channels then, if the item
    is still unread (pipeline/escalation.py). Without an in-app delivery to wait on, there is none."""
    for notification in notifications:
        if not notification.escalation or notification.status == NotificationStatus.EXPIRED:
            continue
        in_app = [d for d in created[notification.id] if d.channel == Channel.IN_APP
                  and d.status in (DeliveryStatus.QUEUED, DeliveryStatus.HELD)]
        channels = notification.escalation["channels"]
        if not in_app:
            notification.decisions.extend(
                {"channel": channel, "decision": "skipped", "step": ESCALATION,
                 "reason": "escalation: no in-app item to wait on (see the in_app decision)"} for channel in channels)
            continue
        delay = timedelta(seconds=notification.escalation["if_unread_after_seconds"])
        notification.escalate_at = max(in_app[0].next_attempt_at, now) + delay
        reason = f"{ESCALATION_PENDING_REASON} {notification.escalate_at:%Y-%m-%d %H:%M:%S} UTC"
        notification.decisions.extend(
            {"channel": channel, "decision": ESCALATION_PENDING, "reason": reason, "step": ESCALATION,
             "release_at": notification.escalate_at.isoformat()} for channel in channels)


def notifications_fall_back(notification_ids) -> set:
    """Start the next fallback channel of those of these notifications that have one left. For the
    deliver step, with notifications whose deliveries all ended and none succeeded, while it holds their
    row locks (dispatch.notifications_refresh_status): so a fallback starts once, however many workers
    record the last outcomes at once. Returns the ids of the notifications now waiting on a fallback."""
    notifications = [n for n in Notification.objects.filter(id__in=notification_ids).select_related("type", "recipient")
                     if fallback_next_channel(n) is not None]
    if not notifications:
        return set()
    now = timezone.now()
    deliveries = defaultdict(list)
    for delivery in Delivery.objects.filter(notification_id__in=[n.id for n in notifications]).only(
            "notification_id", "channel", "status", "status_reason", "last_error"):
        deliveries[delivery.notification_id].append(delivery)
    created = _fallbacks_route(notifications, deliveries, active_devices(n.recipient_id for n in notifications),
                               active_templates(n.type_id for n in notifications), now)
    rows_insert(Delivery, created, ignore_conflicts=True)
    rows_update(notifications, ["decisions"])
    _wake_after_commit(created)
    return {d.notification_id for d in created if d.status in (DeliveryStatus.QUEUED, DeliveryStatus.HELD)}


def _wake_after_commit(deliveries: list[Delivery]) -> None:
    queues = {(d.channel, d.priority) for d in deliveries if d.status == DeliveryStatus.QUEUED}
    transaction.on_commit(lambda: [wake_deliver(channel, priority) for channel, priority in queues], robust=True)


def _apply_rate_limits(notifications: list[Notification], created: dict, now, dry_run: bool = False) -> None:
    """Count each notification × channel about to be sent against the user's windows, in one Redis round
    trip, and suppress or hold what is over a limit (the type's rate_limit_action decides). `dry_run`:
    the windows are read, not counted (rate_limits_peek), and no metric is counted."""
    groups = []  # (notification, channel, its deliveries, its decision)
    for notification in notifications:
        if notification.type.critical:
            continue
        by_channel = defaultdict(list)
        for delivery in created[notification.id]:
            by_channel[delivery.channel].append(delivery)
        for decision in notification.decisions:
            if decision["channel"] in by_channel and decision["decision"] in ("queued", "held"):
                groups.append((notification, decision["channel"], by_channel[decision["channel"]], decision))
    checks = [
        LimitCheck(user_id=n.recipient.user_id, channel=channel, type_key=n.type.key, category=n.type.category,
                   member=str(n.id), hold=n.type.rate_limit_action == RateLimitAction.HOLD)
        for n, channel, _, _ in groups
    ]
    try:
        verdicts = (rate_limits_peek if dry_run else rate_limits_check)(checks, now)
    except redis.RedisError as error:
        # Admit: limits protect users from too much, and holding every batch while Redis is away would
        # stop password resets with the marketing. The outage is in the log and in each decision.
        log.warning("route: rate limits not checked for a batch (%s checks): Redis unreachable (%s)",
                    len(checks), error)
        for _, _, _, decision in groups:
            decision["note"] = f"rate limits not checked: Redis unreachable ({error})"
        return
    for (notification, channel, deliveries, decision), verdict in zip(groups, verdicts):
        if not verdict.limited:
            continue
        if not dry_run:
            metrics.rate_limited_count(channel, "held" if verdict.hold_until else "suppressed")
        if verdict.hold_until is None:
            if not dry_run:
                metrics.route_suppressed_count(channel, verdict.reason)
            decision.update(decision="suppressed", reason=verdict.reason)
            decision.pop("release_at", None)
            for delivery in deliveries:
                delivery.status, delivery.status_reason = DeliveryStatus.SUPPRESSED, verdict.reason
            continue
        release_at = max(verdict.hold_until, deliveries[0].next_attempt_at)
        reason = f"{verdict.reason}; held until {release_at:%Y-%m-%d %H:%M} UTC"
        decision.update(decision="held", reason=reason, release_at=release_at.isoformat())
        for delivery in deliveries:
            delivery.status, delivery.status_reason, delivery.next_attempt_at = DeliveryStatus.HELD, reason, release_at


def _status_after_routing(deliveries: list, decisions: list[dict]) -> str:
    if any(d.status in (DeliveryStatus.QUEUED, DeliveryStatus.HELD) for d in deliveries):
        return NotificationStatus.PROCESSING
    if any(d["decision"] == "digested" for d in decisions):
        return NotificationStatus.DIGESTED
    if any(d["decision"] == "failed" for d in decisions):
        return NotificationStatus.FAILED
    if any(d["decision"] == "suppressed" for d in decisions):
        return NotificationStatus.SUPPRESSED
    return NotificationStatus.UNROUTABLE

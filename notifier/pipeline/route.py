"""Step 2: route. Decide, for each due notification, which channels and targets it goes to, render its
templates, and create one Delivery per target.

A batch is claimed with SELECT … FOR UPDATE SKIP LOCKED and routed in the same transaction: if the worker
dies, the transaction rolls back and the rows are due again; two workers never route the same row.

For each channel, in order: the user's preferences (pipeline/preferences.py), a reachable target, a
template, quiet hours (pipeline/quiet_hours.py) and the user's rate limits (pipeline/rate_limits.py, one
Redis round trip per batch; with Redis unreachable the batch is admitted, as the producer quota admits
requests, and each decision says so). Every channel's outcome is recorded in Notification.decisions with its reason;
a held or suppressed Delivery also carries it in status_reason.
"""
from __future__ import annotations

import logging
from collections import defaultdict

import redis
from django.conf import settings
from django.db import DatabaseError, transaction
from django.utils import timezone

from notifier.channels import CHANNELS
from notifier.db import rows_update
from notifier.models import (
    NOTIFICATION_OPEN_STATUSES,
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
from notifier.pipeline.preferences import channel_verdict
from notifier.pipeline.quiet_hours import describe_release, quiet_hours_release_at
from notifier.pipeline.rate_limits import LimitCheck, rate_limits_check
from notifier.pipeline.render import (
    RenderError,
    active_templates,
    render_failed_deliveries,
    template_choose,
    template_render,
)
from notifier.pipeline.wake import clear_flag, route_queue, wake_deliver, wake_route

log = logging.getLogger(__name__)


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


def notifications_route(notifications: list[Notification]) -> list[Delivery]:
    """Create the deliveries of some notifications and record each channel's decision. Runs in the
    caller's transaction; wakes the deliver queues after commit. A fixed number of queries per batch."""
    now = timezone.now()
    devices = active_devices([n.recipient_id for n in notifications])
    templates = active_templates(n.type_id for n in notifications)
    created = {notification.id: _route_one_guarded(notification, devices[notification.recipient_id], templates, now)
               for notification in notifications}
    _apply_rate_limits(notifications, created, now)
    digest.digests_collect(notifications, now)
    deliveries = []
    for notification in notifications:
        deliveries.extend(created[notification.id])
        if notification.status != NotificationStatus.EXPIRED:
            notification.status = _status_after_routing(created[notification.id], notification.decisions)
        notification.routed_at = now
        if notification.status != NotificationStatus.PROCESSING:
            notification.completed_at = now

    # ignore_conflicts: a Delivery is unique per notification × channel × target, so routing twice is harmless.
    Delivery.objects.bulk_create(deliveries, ignore_conflicts=True)
    rows_update(notifications, ["status", "decisions", "routed_at", "completed_at"])

    queues = {(d.channel, d.priority) for d in deliveries if d.status == DeliveryStatus.QUEUED}
    transaction.on_commit(lambda: [wake_deliver(channel, priority) for channel, priority in queues], robust=True)
    return deliveries


def _route_one_guarded(notification: Notification, devices: list[Device], templates: dict, now) -> list[Delivery]:
    """_route_one, with an unexpected error recorded as this notification's failure: the batch's other
    notifications are routed, not rolled back with it and retried forever. A database error still
    raises: the transaction is lost then, and the whole batch is due again."""
    try:
        return _route_one(notification, devices, templates, now)
    except DatabaseError:
        raise
    except Exception as error:
        log.exception("route: notification %s failed to route", notification.id)
        notification.decisions = [{"channel": "*", "decision": "failed",
                                   "reason": f"routing error: {type(error).__name__}: {error}"}]
        return []


def _route_one(notification: Notification, devices: list[Device], templates: dict, now) -> list[Delivery]:
    notification.decisions = []

    def decide(channel: str, decision: str, reason: str = "", **extra):
        notification.decisions.append({"channel": channel, "decision": decision, "reason": reason, **extra})

    if notification.expires_at and notification.expires_at <= now:
        notification.status = NotificationStatus.EXPIRED
        decide("*", "expired", f"expired at {notification.expires_at.isoformat()} before it was routed")
        return []

    recipient = notification.recipient
    notification_type = notification.type
    release_at = None
    if notification.priority != Priority.HIGH and not notification_type.critical:
        release_at = quiet_hours_release_at(now, recipient.quiet_hours_start, recipient.quiet_hours_end,
                                            recipient.timezone)
    deliveries = []
    channel_names = notification.channels or notification_type.default_channels
    if not isinstance(channel_names, list):
        decide("*", "failed", f"type {notification_type.key}: default_channels is not a list of channels")
        return []
    for channel_name in channel_names:
        channel = CHANNELS.get(channel_name) if isinstance(channel_name, str) else None
        if channel is None:  # the API and admin refuse these; a row edited around them must not raise
            decide(str(channel_name), "failed",
                   f"unknown channel {channel_name!r}; known channels: {', '.join(CHANNELS)}")
            continue
        verdict = channel_verdict(recipient, notification_type, channel_name)
        if not verdict.allowed:
            decide(channel_name, "suppressed", verdict.reason)
            continue
        targets, reason = channel.targets(recipient, devices)
        if not targets:
            decide(channel_name, "skipped", reason)
            continue
        template = template_choose(
            templates, notification.type_id, channel_name, recipient.language, notification.type.default_language
        )
        if template is None:
            decide(channel_name, "skipped", f"no active {channel_name} template for type {notification.type.key}")
            continue
        window = digest.digest_window(notification, channel_name, recipient)
        if window:  # collected into the user's digest; beat sends it when the window ends
            decide(channel_name, "digested", f"collected into a digest sent at the end of its {window} s window",
                   window=window)
            continue
        try:
            content = template_render(template, notification.type, notification.data, recipient=recipient,
                                      notification_id=notification.id)
        except RenderError as error:
            decide(channel_name, "failed", str(error), targets=len(targets), template_version=template.version)
            deliveries.extend(render_failed_deliveries(notification, channel_name, targets, template, error, now))
            continue
        held = release_at is not None and channel_name in settings.NOTIFIER_QUIET_HOURS_CHANNELS
        status_reason = f"held for quiet hours until {describe_release(release_at, recipient.timezone)}" if held else ""
        deliveries.extend(deliveries_build(
            notification, channel_name, targets, template, content=content,
            status=DeliveryStatus.HELD if held else DeliveryStatus.QUEUED, status_reason=status_reason,
            next_attempt_at=release_at if held else now,
        ))
        extra = {"release_at": release_at.isoformat()} if held else {}
        if verdict.reason:  # a critical type, sent despite an opt-out
            extra["note"] = verdict.reason
        decide(channel_name, "held" if held else "queued", status_reason, targets=len(targets),
               template_version=template.version, language=template.language, **extra)
    return deliveries


def _apply_rate_limits(notifications: list[Notification], created: dict, now) -> None:
    """Count each notification × channel about to be sent against the user's windows, in one Redis round
    trip, and suppress or hold what is over a limit (the type's rate_limit_action decides)."""
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
        verdicts = rate_limits_check(checks, now)
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
        if verdict.hold_until is None:
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

"""Step 2: route. Decide, for each due notification, which channels and targets it goes to, render its
templates, and create one Delivery per target.

A batch is claimed with SELECT … FOR UPDATE SKIP LOCKED and routed in the same transaction: if the worker
dies, the transaction rolls back and the rows are due again; two workers never route the same row.
"""
from __future__ import annotations

import logging
from collections import defaultdict

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from notifier.channels import CHANNELS
from notifier.models import (
    NOTIFICATION_OPEN_STATUSES,
    Delivery,
    DeliveryStatus,
    Device,
    Notification,
    NotificationStatus,
)
from notifier.pipeline.render import RenderError, active_templates, template_choose, template_render
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
    devices = _active_devices([n.recipient_id for n in notifications])
    templates = active_templates(n.type_id for n in notifications)
    deliveries = []
    for notification in notifications:
        created = _route_one(notification, devices[notification.recipient_id], templates, now)
        deliveries.extend(created)
        if notification.status != NotificationStatus.EXPIRED:
            notification.status = _status_after_routing(created, notification.decisions)
        notification.routed_at = now
        if notification.status != NotificationStatus.PROCESSING:
            notification.completed_at = now

    # ignore_conflicts: a Delivery is unique per notification × channel × target, so routing twice is harmless.
    Delivery.objects.bulk_create(deliveries, ignore_conflicts=True)
    Notification.objects.bulk_update(notifications, ["status", "decisions", "routed_at", "completed_at"])

    queues = {(d.channel, d.priority) for d in deliveries}
    transaction.on_commit(lambda: [wake_deliver(channel, priority) for channel, priority in queues], robust=True)
    return deliveries


def _route_one(notification: Notification, devices: list[Device], templates: dict, now) -> list[Delivery]:
    notification.decisions = []

    def decide(channel: str, decision: str, reason: str = "", **extra):
        notification.decisions.append({"channel": channel, "decision": decision, "reason": reason, **extra})

    if notification.expires_at and notification.expires_at <= now:
        notification.status = NotificationStatus.EXPIRED
        decide("*", "expired", f"expired at {notification.expires_at.isoformat()} before it was routed")
        return []

    recipient = notification.recipient
    deliveries = []
    for channel_name in notification.channels or notification.type.default_channels:
        channel = CHANNELS[channel_name]
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
        try:
            content = template_render(template, notification.type, notification.data, recipient=recipient,
                                      notification_id=notification.id)
        except RenderError as error:
            decide(channel_name, "failed", str(error))
            continue
        for target in targets:
            deliveries.append(
                Delivery(
                    notification=notification,
                    channel=channel_name,
                    priority=notification.priority,
                    target=target.address,
                    device=target.device,
                    template=template,
                    content=content,
                    status=DeliveryStatus.QUEUED,
                    next_attempt_at=now,
                )
            )
        decide(channel_name, "queued", "", targets=len(targets), template_version=template.version,
               language=template.language)
    return deliveries


def _status_after_routing(deliveries: list, decisions: list[dict]) -> str:
    if deliveries:
        return NotificationStatus.PROCESSING
    if any(d["decision"] == "failed" for d in decisions):
        return NotificationStatus.FAILED
    return NotificationStatus.UNROUTABLE


def _active_devices(recipient_ids) -> dict[int, list[Device]]:
    devices = defaultdict(list)
    for device in Device.objects.filter(recipient_id__in=set(recipient_ids), active=True).order_by("id"):
        devices[device.recipient_id].append(device)
    return devices

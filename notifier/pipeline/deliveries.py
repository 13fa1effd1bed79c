"""Delivery rows, and the devices they go to, are made here and nowhere else: the route step, digest
flushes, the admin's test sends and render failures all build their rows with `deliveries_build` and
find a user's devices with `active_devices`, so that every path's rows carry the same fields."""
from __future__ import annotations

from collections import defaultdict

from notifier.db import row_new
from notifier.models import Delivery, DeliveryStatus, Device


def deliveries_build(notification, channel: str, targets, template, *, next_attempt_at, content: dict | None = None,
                     status: str = DeliveryStatus.QUEUED, status_reason: str = "", failed_at=None,
                     last_error: str = "") -> list[Delivery]:
    """One unsaved Delivery of `notification` on `channel` per target (a channel's Target: address and
    device), at the notification's priority, rendered by `template` into `content`, with the notification's
    due time, producer and type copied (what the stats read). The only constructor of Delivery: the caller
    saves them (in bulk) and decides the status: queued (due at next_attempt_at), held (released then, status_reason
    says why) or failed (failed_at, last_error)."""
    return [
        row_new(
            Delivery,
            notification=notification,
            notification_due_at=notification.due_at,
            producer_id=notification.producer_id,
            type_id=notification.type_id,
            campaign_id=notification.campaign_id,
            channel=channel,
            priority=notification.priority,
            target=target.address,
            device=target.device,
            template=template,
            content=content if content is not None else {},
            status=status,
            status_reason=status_reason,
            next_attempt_at=next_attempt_at,
            failed_at=failed_at,
            last_error=last_error,
        )
        for target in targets
    ]


def active_devices(recipient_ids) -> defaultdict[int, list[Device]]:
    """The active devices of some recipients, by recipient id, in the order they were registered (a
    recipient with none maps to []). One query."""
    devices = defaultdict(list)
    for device in Device.objects.filter(recipient_id__in=set(recipient_ids), active=True).order_by("id"):
        devices[device.recipient_id].append(device)
    return devices

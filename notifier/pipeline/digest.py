"""Digests: a user's notifications of a digestible type collapse into one delivery per channel.

The route step asks `digest_window` for each channel it is about to send on; a non-zero window means the
notification joins the user's open DigestBatch for that type × channel instead of getting its own
delivery (decision "digested"). Beat runs `digests_flush`: every batch whose window has ended is rendered
once with the count and the items — the template sees its usual variables (the newest item's data) plus
`digest.count`, `digest.others` and `digest.items` ("{{ actor }} and {{ digest.others }} others liked
your photo") — and becomes one Delivery on the batch's newest notification. The batch is locked and marked
flushed in the transaction that creates the Delivery, so each window is sent exactly once.

A cancel (pipeline/cancel.py) takes a notification out of the open batch it waits in: the route step
records the batch's id in the notification's "digested" decision, so the cancel finds it.

Never digested: the in-app inbox (it shows every item), critical types and high-priority notifications.
The window is the user's digest setting when it is "hourly" or "daily", else the type's own
`digest_window_seconds`; a type with no window is never digested.
"""
from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from notifier.channels import CHANNELS
from notifier.channels.email import email_suppressions_load
from notifier.db import rows_update
from notifier.models import (
    Channel,
    Delivery,
    DeliveryStatus,
    Digest,
    DigestBatch,
    NotificationStatus,
    Priority,
)
from notifier.pipeline.deliveries import active_devices, deliveries_build
from notifier.pipeline.quiet_hours import describe_release, quiet_hours_release_at
from notifier.pipeline.render import (
    RenderError,
    active_templates,
    render_failed_deliveries,
    template_choose,
    template_render,
)
from notifier.pipeline.wake import wake_deliver

log = logging.getLogger(__name__)

USER_WINDOWS = {Digest.HOURLY: 3600, Digest.DAILY: 24 * 3600}
FLUSH_BATCH_SIZE = 500


def digest_window(notification, channel: str, recipient) -> int:
    """Seconds this notification waits in a digest on this channel; 0: it is sent on its own, now."""
    notification_type = notification.type
    if (
        channel == Channel.IN_APP
        or notification_type.critical
        or notification.priority == Priority.HIGH
        or not notification_type.digest_window_seconds
    ):
        return 0
    return USER_WINDOWS.get(getattr(recipient, "digest", Digest.REALTIME), notification_type.digest_window_seconds)


def digests_collect(notifications, now) -> None:
    """Add every notification × channel the route step marked "digested" to its open batch, opening batches
    as needed. Runs in the route step's transaction; a fixed number of queries per route batch."""
    pairs = [(n, d) for n in notifications for d in n.decisions if d["decision"] == "digested"]
    if not pairs:
        return
    keys = {(n.recipient_id, n.type_id, d["channel"]): d["window"] for n, d in pairs}
    # Open the missing batches; a concurrent route worker may open the same one: its insert waits on ours
    # at the unique index, then is ignored, and both append under the row lock below.
    DigestBatch.objects.bulk_create(
        [DigestBatch(recipient_id=r, type_id=t, channel=c, window_ends_at=now + timedelta(seconds=window))
         for (r, t, c), window in keys.items()],
        ignore_conflicts=True,
    )
    batches = {
        (b.recipient_id, b.type_id, b.channel): b
        for b in DigestBatch.objects.select_for_update().filter(
            status=DigestBatch.OPEN, recipient_id__in={k[0] for k in keys}, type_id__in={k[1] for k in keys},
            channel__in={k[2] for k in keys},
        )
    }
    for (r, t, c), window in keys.items():
        if (r, t, c) not in batches:  # flushed between our insert and our lock: open the next one
            batches[(r, t, c)] = DigestBatch.objects.create(recipient_id=r, type_id=t, channel=c,
                                                            window_ends_at=now + timedelta(seconds=window))
    for notification, decision in pairs:
        batch = batches[(notification.recipient_id, notification.type_id, decision["channel"])]
        decision["digest_batch"] = batch.id  # so that a cancel finds the batch to take it out of
        batch.count += 1
        item = {"notification_id": str(notification.id), "data": notification.data,
                "created_at": notification.created_at.isoformat() if notification.created_at else now.isoformat()}
        batch.items = (batch.items + [item])[-DigestBatch.MAX_ITEMS:]
        batch.last_notification = notification
    DigestBatch.objects.bulk_update(list(batches.values()), ["count", "items", "last_notification"])


def digests_flush(now=None, batch_size: int = FLUSH_BATCH_SIZE) -> int:
    """Send every digest whose window has ended: one Delivery per batch and target, rendered with the
    count and the items. Returns how many batches were flushed. Works through them `batch_size` at a
    time, each chunk in its own transaction with a fixed number of queries, until none is left."""
    now = now or timezone.now()
    flushed = 0
    while True:
        count = _digests_flush_chunk(now, batch_size)
        flushed += count
        if count < batch_size:
            return flushed


def _digests_flush_chunk(now, batch_size: int) -> int:
    with transaction.atomic():
        batches = list(
            DigestBatch.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(status=DigestBatch.OPEN, window_ends_at__lte=now)
            .select_related("type", "recipient", "last_notification")
            .order_by("window_ends_at")[:batch_size]
        )
        if not batches:
            return 0
        templates = active_templates(b.type_id for b in batches)
        devices = active_devices(b.recipient_id for b in batches)
        email_suppressions_load([b.recipient for b in batches if b.channel == "email"])
        deliveries, by_batch, notifications = [], {}, []
        for batch in batches:
            batch.status, batch.flushed_at = DigestBatch.FLUSHED, now
            created, decision = _digest_deliveries(batch, templates, devices[batch.recipient_id])
            by_batch[batch.id] = created
            deliveries.extend(created)
            notification = batch.last_notification
            if notification is not None:
                notification.decisions = [*notification.decisions, decision]
                if any(d.status in (DeliveryStatus.QUEUED, DeliveryStatus.HELD) for d in created):
                    notification.status, notification.completed_at = NotificationStatus.PROCESSING, None
                notifications.append(notification)
        Delivery.objects.bulk_create(deliveries)  # unique per notification × channel × target: never twice
        for batch in batches:
            batch.delivery = by_batch[batch.id][0] if by_batch[batch.id] else None
        rows_update(batches, ["status", "flushed_at", "delivery"])
        rows_update(notifications, ["decisions", "status", "completed_at"])
        queues = {(d.channel, d.priority) for d in deliveries if d.status == DeliveryStatus.QUEUED}
        transaction.on_commit(lambda: [wake_deliver(c, p) for c, p in queues], robust=True)
    log.info("digest: flushed %s batches into %s deliveries", len(batches), len(deliveries))
    return len(batches)


def _digest_deliveries(batch: DigestBatch, templates: dict, devices: list) -> tuple[list[Delivery], dict]:
    notification, recipient = batch.last_notification, batch.recipient
    decision = {"channel": batch.channel, "decision": "digest", "reason": "", "digest_batch": batch.id,
                "count": batch.count}
    if notification is None:
        return [], {**decision, "decision": "failed", "reason": "the digest's notification was deleted"}
    targets, reason = CHANNELS[batch.channel].targets(recipient, devices)
    template = template_choose(templates, batch.type_id, batch.channel, recipient.language,
                               batch.type.default_language)
    if not targets or template is None:
        reason = reason or f"no active {batch.channel} template for type {batch.type.key}"
        return [], {**decision, "decision": "skipped", "reason": reason}
    items = [item["data"] for item in batch.items]
    extra = {"digest": {"count": batch.count, "others": batch.count - 1, "items": items}}
    try:
        content = template_render(template, batch.type, notification.data, recipient=recipient, extra=extra,
                                  notification_id=notification.id)
    except RenderError as error:
        log.warning("digest: batch %s of user %s failed to render: %s", batch.id, recipient.user_id, error)
        failed = render_failed_deliveries(notification, batch.channel, targets, template, error, timezone.now())
        return failed, {**decision, "decision": "failed", "reason": str(error), "targets": len(targets),
                        "template_version": template.version}
    # A digest ending in the user's quiet hours waits for them to end, like any non-urgent delivery.
    now = timezone.now()
    release_at = quiet_hours_release_at(now, recipient.quiet_hours_start, recipient.quiet_hours_end,
                                        recipient.timezone)
    held = release_at is not None and batch.channel in settings.NOTIFIER_QUIET_HOURS_CHANNELS
    status_reason = f"held for quiet hours until {describe_release(release_at, recipient.timezone)}" if held else ""
    deliveries = deliveries_build(
        notification, batch.channel, targets, template, content=content,
        status=DeliveryStatus.HELD if held else DeliveryStatus.QUEUED, status_reason=status_reason,
        next_attempt_at=release_at if held else now,
    )
    reason = f"digest of {batch.count} notifications" + (f"; {status_reason}" if held else "")
    return deliveries, {**decision, "decision": "held" if held else "queued", "reason": reason,
                        "targets": len(targets), "template_version": template.version}

"""Cancel: a producer takes back notifications it sent, one by its id or every notification of one request by
that request's idempotency key (up to 1,000, one per recipient).

What a cancel stops, in each notification:
- the whole notification, when it is not routed yet (accepted, scheduled): it ends `cancelled`;
- every delivery not yet handed to a provider (DELIVERY_WAITING_STATUSES: queued, which includes a retry
  waiting out its backoff, and held for quiet hours or a rate limit): each becomes `cancelled`;
- its place in a digest whose window is still open: it is taken out (its decision becomes `cancelled`),
  and the digest is sent without it; a digest left empty is closed unsent. Once the window has closed, the
  digest is a delivery of its newest notification, rendered with that one's data: cancelling the newest
  cancels that delivery like any other, cancelling an older one leaves the digest as it is.
What it cannot stop: a delivery a worker has claimed (`sending`) finishes its attempt, since the provider may
have it already. It is never sent again: Notification.cancelled_at turns a retry or a return to the queue
into `cancelled` (pipeline/dispatch.py).

The notification then closes by the usual rule (dispatch.notifications_refresh_status): `cancelled` when
nothing went out, `delivered` or `partially_delivered` when something did, still `processing` while a
claimed delivery finishes. Cancelling again changes nothing and answers the same, less what it newly
cancelled.

Races. The route step routes a notification under a FOR UPDATE lock on its row, and a cancel waits for the
same lock: either the route step commits first and the cancel then cancels the deliveries it made, or the
cancel commits first and the route step, which takes only accepted and scheduled rows, never routes it. A
worker claims a delivery with a conditional update under the row's lock (queued → sending), and the cancel
locks the waiting deliveries it cancels: exactly one of the two changes each row.

A fixed number of queries, whatever the number of notifications.
"""
from __future__ import annotations

import uuid

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from notifier.db import rows_update
from notifier.models import (
    DELIVERY_IN_FLIGHT_STATUSES,
    DELIVERY_SUCCESS_STATUSES,
    DELIVERY_WAITING_STATUSES,
    NOTIFICATION_OPEN_STATUSES,
    Delivery,
    DeliveryStatus,
    DigestBatch,
    EventSource,
    Notification,
    NotificationStatus,
)
from notifier.pipeline.dispatch import CANCELLED_REASON, notifications_refresh_status
from notifier.pipeline.status import deliveries_move

# Handed to a provider, which took it (a bounce came later: it went out all the same).
ALREADY_SENT_STATUSES = (*DELIVERY_SUCCESS_STATUSES, DeliveryStatus.BOUNCED)
DIGEST_CANCELLED_REASON = "taken out of its digest by a cancel, before the digest was sent"


def notification_cancel(producer, notification_id) -> dict | None:
    """Cancel one of this producer's notifications and say what became of each of its deliveries; None
    when the producer has no notification with this id."""
    try:
        notification_id = uuid.UUID(str(notification_id))
    except ValueError:
        return None
    answers = notifications_cancel(Q(producer=producer, id=notification_id))
    return answers[0] if answers else None


def notifications_cancel_by_key(producer, idempotency_key: str) -> list[dict]:
    """Cancel every notification this producer sent under an idempotency key; [] when there is none."""
    return notifications_cancel(by_idempotency_key(producer, idempotency_key))


def by_idempotency_key(producer, idempotency_key: str) -> Q:
    # Not blank: the condition of the index that finds them, and a blank key names no request.
    return Q(producer=producer, idempotency_key=idempotency_key) & ~Q(idempotency_key="")


def notifications_cancel(where: Q, source: str = EventSource.WORKER) -> list[dict]:
    """Cancel the notifications `where` selects, in one transaction, and return one answer per notification
    (see _answer), ordered by id. `source` is who the deliveries' history names (an operator: admin)."""
    now = timezone.now()
    with transaction.atomic():
        # Digest batches are locked before notifications: the order digests_flush takes them in (it locks a
        # batch, then writes its newest notification), so that the two never deadlock.
        batches = _digest_batches_lock(
            _digest_batch_ids(Notification.objects.filter(where).values_list("decisions", flat=True))
        )
        notifications = list(
            Notification.objects.select_for_update(of=("self",)).filter(where)
            .select_related("recipient").order_by("id")
        )
        if not notifications:
            return []
        # A notification the route step routed while this cancel waited for its lock may have joined a batch
        # since the first read. Locked out of order, but a batch that new is not being flushed.
        batches |= _digest_batches_lock(_digest_batch_ids(n.decisions for n in notifications) - batches.keys())
        ids = [n.id for n in notifications]

        waiting = Delivery.objects.select_for_update().filter(notification_id__in=ids,
                                                             status__in=DELIVERY_WAITING_STATUSES)
        was = {id_: ("retrying" if status == DeliveryStatus.QUEUED and attempts else status)
               for id_, status, attempts in waiting.values_list("id", "status", "attempts")}
        if was:
            deliveries_move({"id__in": list(was)}, DeliveryStatus.CANCELLED, source=source,
                            fields={"status_reason": CANCELLED_REASON})

        first_cancels = [n for n in notifications if n.cancelled_at is None]
        left_digests = _digests_leave(first_cancels, batches, now)
        for notification in first_cancels:
            notification.cancelled_at = now
            if notification.escalate_at is not None:  # the escalation will not be sent: nothing keeps it open
                notification.escalate_at = None
                notification.decisions.extend(
                    {"channel": channel, "decision": "cancelled", "step": "escalation",
                     "reason": "escalation cancelled with the notification"}
                    for channel in notification.escalation["channels"]
                )
            if notification.status in NOTIFICATION_OPEN_STATUSES or (
                notification.status == NotificationStatus.DIGESTED and notification in left_digests
                and not any(d["decision"] == "digested" for d in notification.decisions)
            ):
                notification.status, notification.completed_at = NotificationStatus.CANCELLED, now
        rows_update(first_cancels, ["status", "completed_at", "cancelled_at", "escalate_at", "decisions"])
        notifications_refresh_status([n.id for n in notifications if n.status == NotificationStatus.PROCESSING])

        statuses = dict(Notification.objects.filter(id__in=ids).values_list("id", "status"))
        deliveries = list(
            Delivery.objects.filter(notification_id__in=ids).order_by("id")
            .values_list("id", "notification_id", "channel", "target", "status")
        )
    answers = {n.id: _answer(n, statuses[n.id], batches) for n in notifications}
    for delivery_id, notification_id, channel, target, status in deliveries:
        entry = {"delivery_id": delivery_id, "channel": channel, "target": target, "status": status}
        if delivery_id in was:
            answers[notification_id]["cancelled"].append({**entry, "was": was[delivery_id]})
        else:
            answers[notification_id][_group(status)].append(entry)
    return list(answers.values())


def _answer(notification: Notification, status: str, batches: dict) -> dict:
    """A notification's answer: its status after the cancel, and each delivery in exactly one group:
    cancelled (by this cancel; `was` says how it was waiting: queued, retrying or held), in_flight (a worker
    has it: it finishes, and may reach the user), already_sent (handed to a provider before the cancel),
    not_sent (ended earlier without going out: failed, dead, suppressed, expired, or cancelled before).
    `digests`: each digest it was collected into, and whether it was taken out (`removed`) or went with the
    digest, which is a delivery of notification `digest_notification_id`."""
    digests = []
    for decision in notification.decisions:
        batch = batches.get(decision.get("digest_batch")) if decision["decision"] in ("digested", "cancelled") else None
        if batch is not None:
            removed = decision["decision"] == "cancelled"
            digests.append({"channel": decision["channel"], "digest_batch": batch.id, "removed": removed,
                            "digest_notification_id": None if removed else batch.last_notification_id})
    return {"id": notification.id, "user_id": notification.recipient.user_id, "status": status,
            "cancelled_at": notification.cancelled_at, "cancelled": [], "in_flight": [], "already_sent": [],
            "not_sent": [], "digests": digests}


def _group(status: str) -> str:
    if status in DELIVERY_IN_FLIGHT_STATUSES:
        return "in_flight"
    if status in ALREADY_SENT_STATUSES:
        return "already_sent"
    return "not_sent"


def _digest_batch_ids(decision_lists) -> set[int]:
    """The digest batches these notifications were collected into (the route step records each one's id)."""
    return {d["digest_batch"] for decisions in decision_lists for d in decisions if d.get("digest_batch")
            and d["decision"] in ("digested", "cancelled")}


def _digest_batches_lock(batch_ids: set[int]) -> dict[int, DigestBatch]:
    if not batch_ids:
        return {}
    return {b.id: b for b in DigestBatch.objects.select_for_update().filter(id__in=batch_ids).order_by("id")}


def _digests_leave(notifications: list[Notification], batches: dict[int, DigestBatch], now) -> set[Notification]:
    """Take each notification out of the open digests it waits in, marking those decisions cancelled;
    returns the notifications taken out of at least one. One query for all the batches."""
    changed, left = {}, set()
    for notification in notifications:
        for decision in notification.decisions:
            batch = batches.get(decision.get("digest_batch")) if decision["decision"] == "digested" else None
            if batch is None or batch.status != DigestBatch.OPEN:
                continue
            _digest_remove(batch, notification.id, now)
            decision.update(decision="cancelled", reason=DIGEST_CANCELLED_REASON)
            changed[batch.id] = batch
            left.add(notification)
    rows_update(list(changed.values()), ["count", "items", "last_notification", "status", "flushed_at"])
    return left


def _digest_remove(batch: DigestBatch, notification_id: uuid.UUID, now) -> None:
    batch.count -= 1
    batch.items = [item for item in batch.items if item["notification_id"] != str(notification_id)]
    if batch.last_notification_id == notification_id:  # the digest hangs on its newest remaining notification
        batch.last_notification_id = uuid.UUID(batch.items[-1]["notification_id"]) if batch.items else None
    if not batch.count:  # nothing left to send: closed, with no delivery
        batch.status, batch.flushed_at = DigestBatch.FLUSHED, now

"""Step 1: accept a producer's request. Store it, answer at once, let the route step take it from there.

The Notification rows are the outbox: they are written in the request's transaction, and the route queue
is woken only after commit, so a worker never looks for a row that is not there yet, and a broker outage
loses nothing (the sweeper wakes the queue once the broker is back).
"""
from __future__ import annotations

import hashlib
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime

import orjson
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from notifier.models import IdempotencyKey, Notification, NotificationStatus, NotificationType
from notifier.pipeline.wake import wake_route
from notifier.services import recipients_upsert

# Contact fields a request may set inline on a recipient entry.
CONTACT_FIELDS = ("email", "phone", "timezone", "language")


@dataclass
class RecipientEntry:
    user_id: str
    data: dict = field(default_factory=dict)
    channels: list[str] = field(default_factory=list)
    contact: dict = field(default_factory=dict)  # any of CONTACT_FIELDS


@dataclass
class AcceptRequest:
    """A validated POST /api/v1/notifications."""

    type: NotificationType
    recipients: list[RecipientEntry]
    data: dict
    channels: list[str]
    priority: str
    schedule_at: datetime | None = None
    expires_at: datetime | None = None
    idempotency_key: str = ""
    collapse_key: str = ""  # push: a newer notification with the same key replaces the older one
    fallback_channels: list[str] | None = None  # None: the type's default_fallback_channels
    escalation: dict | None = None  # {"channels": [...], "if_unread_after_seconds": n}


@dataclass
class AcceptResult:
    response: dict
    replayed: bool = False


class IdempotencyConflict(Exception):
    """The key was used before with a different request body."""


class IdempotencyKeyInFlight(Exception):
    """A request with this key is still being processed (its transaction has not ended)."""


def request_fingerprint(body: dict) -> str:
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


def notifications_accept(producer, request: AcceptRequest, fingerprint: str = "") -> AcceptResult:
    """Store one notification per recipient and return the answer for the producer.

    With an idempotency key, a request seen before gets the answer it got then; a different request under
    the same key raises IdempotencyConflict; a request whose key is still in flight in another transaction
    raises IdempotencyKeyInFlight at once (it does not wait). One key never creates two sets of rows.

    Only the key needs a transaction: without one, the notifications are a single INSERT (atomic by
    itself) and the recipient upsert is idempotent, so the request saves the BEGIN and COMMIT round trips.
    """
    with transaction.atomic() if request.idempotency_key else nullcontext():
        if request.idempotency_key:
            previous = _claim_idempotency_key(producer, request.idempotency_key, fingerprint)
            if previous is not None:
                return AcceptResult(response=previous, replayed=True)
        notifications = _store(producer, request)
        response = {
            "notifications": [
                {"id": str(n.id), "user_id": user_id, "status": n.status}
                for n, user_id in zip(notifications, (entry.user_id for entry in request.recipients))
            ]
        }
        if request.idempotency_key:
            IdempotencyKey.objects.filter(producer=producer, key=request.idempotency_key).update(response=response)
        if any(n.status == NotificationStatus.ACCEPTED for n in notifications):
            transaction.on_commit(lambda: wake_route(request.priority), robust=True)
    return AcceptResult(response=response)


def _claim_idempotency_key(producer, key: str, fingerprint: str) -> dict | None:
    """Insert the key, or return the answer stored under it. Raises IdempotencyConflict on a new body, and
    IdempotencyKeyInFlight when another transaction holds the key."""
    if not idempotency_key_lock(producer, key):
        raise IdempotencyKeyInFlight(key)
    try:
        with transaction.atomic():
            IdempotencyKey.objects.create(producer=producer, key=key, request_hash=fingerprint, response={})
        return None
    except IntegrityError:
        previous = IdempotencyKey.objects.get(producer=producer, key=key)
    if previous.request_hash != fingerprint:
        raise IdempotencyConflict(key)
    return previous.response


def idempotency_key_lock(producer, key: str, namespace: str = "notifier.idempotency") -> bool:
    """Take a transaction-level advisory lock on (namespace, producer, key) if no one holds it (the
    campaigns' keys have a namespace of their own, notifier/campaigns/service.py). Without it, a second
    request with a key in flight would wait on the key's unique index, holding a thread and a connection,
    until the first ends. The lock goes with the first's transaction: once it is free, the key's row (if the
    first committed) is visible and the insert below finds it. (SQLite, `make run`'s default, serializes
    writers anyway: a second request waits for the first's transaction to end, then replays: True there.)"""
    if connection.vendor != "postgresql":
        return True
    digest = hashlib.sha256(f"{namespace}:{producer.pk}:{key}".encode()).digest()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [int.from_bytes(digest[:8], "big", signed=True)])
        return cursor.fetchone()[0]


def _store(producer, request: AcceptRequest) -> list[Notification]:
    recipients, _ = recipients_upsert((entry.user_id, entry.contact) for entry in request.recipients)
    now = timezone.now()
    scheduled = request.schedule_at is not None and request.schedule_at > now
    notifications = [
        Notification(
            producer=producer,
            type=request.type,
            recipient=recipients[entry.user_id],
            data={**request.data, **entry.data},
            channels=entry.channels or request.channels,
            priority=request.priority,
            status=NotificationStatus.SCHEDULED if scheduled else NotificationStatus.ACCEPTED,
            idempotency_key=request.idempotency_key,
            collapse_key=request.collapse_key,
            fallback_channels=request.fallback_channels,
            escalation=request.escalation,
            schedule_at=request.schedule_at,
            expires_at=request.expires_at,
            due_at=request.schedule_at if scheduled else now,
        )
        for entry in request.recipients
    ]
    if len(notifications) == 1:
        notifications[0].save(force_insert=True)  # bulk_create would wrap it in BEGIN … COMMIT
    else:
        Notification.objects.bulk_create(notifications)
    return notifications

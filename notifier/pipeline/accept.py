"""Step 1: accept a producer's request. Store it, answer at once, let the route step take it from there.

The Notification rows are the outbox: they are written in the request's transaction, and the route queue
is woken only after commit, so a worker never looks for a row that is not there yet, and a broker outage
loses nothing (the sweeper wakes the queue once the broker is back).
"""
from __future__ import annotations

import functools
import hashlib
import textwrap
import uuid
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime

import orjson
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from notifier.db import column_value_getter, column_cast_type, row_new
from notifier.models import IdempotencyKey, Notification, NotificationStatus, NotificationType, Recipient
from notifier.models.fields import json_text
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
        ids, status = _store(producer, request)
        response = {
            "notifications": [
                {"id": str(id_), "user_id": entry.user_id, "status": status}
                for id_, entry in zip(ids, request.recipients)
            ]
        }
        if request.idempotency_key:
            IdempotencyKey.objects.filter(producer=producer, key=request.idempotency_key).update(response=response)
        if status == NotificationStatus.ACCEPTED:
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


def _store(producer, request: AcceptRequest) -> tuple[list[uuid.UUID], str]:
    """Store one notification per recipient, creating the recipients not known yet: the notifications'
    ids, in the request's order, and their status (the same for all). On PostgreSQL that is one statement
    (_notifications_insert); inline contact fields are written before it by recipients_upsert, which
    writes only what changed."""
    now = timezone.now()
    scheduled = request.schedule_at is not None and request.schedule_at > now
    status = NotificationStatus.SCHEDULED if scheduled else NotificationStatus.ACCEPTED
    fixed = dict(
        producer=producer,
        type=request.type,
        priority=request.priority,
        status=status,
        idempotency_key=request.idempotency_key,
        collapse_key=request.collapse_key,
        fallback_channels=request.fallback_channels,
        escalation=request.escalation,
        schedule_at=request.schedule_at,
        expires_at=request.expires_at,
        due_at=request.schedule_at if scheduled else now,
    )
    ids = [uuid.uuid4() for _ in request.recipients]
    if connection.vendor == "postgresql":
        if any(entry.contact for entry in request.recipients):
            recipients_upsert((entry.user_id, entry.contact) for entry in request.recipients)
        _notifications_insert(row_new(Notification, **fixed), request, ids)
        return ids, status
    # Elsewhere (SQLite, `make run`'s default): the ORM, a few statements.
    recipients, _ = recipients_upsert((entry.user_id, entry.contact) for entry in request.recipients)
    notifications = [
        Notification(id=id_, recipient=recipients[entry.user_id], data={**request.data, **entry.data},
                     channels=entry.channels or request.channels, **fixed)
        for id_, entry in zip(ids, request.recipients)
    ]
    if len(notifications) == 1:
        notifications[0].save(force_insert=True)  # bulk_create would wrap it in BEGIN … COMMIT
    else:
        Notification.objects.bulk_create(notifications)
    return ids, status


# A lost race: a concurrent request created one of the recipients after this statement's snapshot was
# taken, so the statement inserted nothing; the next one sees that recipient. Three is plenty: each lost
# race means a row that is committed (ON CONFLICT waited for it) by the next attempt.
_INSERT_ATTEMPTS = 3


def _notifications_insert(template: Notification, request: AcceptRequest, ids: list[uuid.UUID]) -> None:
    """One statement, one round trip, for any number of recipients: find the recipients by user id, create
    the missing ones (a new recipient has every column at its default), and insert one notification per
    recipient with `template`'s values (its channels aside), the recipient's id, its data (the request's
    merged with the entry's: jsonb's || is the dict merge) and channels (the entry's, else the request's).
    It inserts all the notifications or none.

    A single recipient who exists already, the usual request, is inserted by a plainer statement first
    (_single_insert): the one above costs PostgreSQL twice its CPU. Only a new user takes both."""
    if len(ids) == 1 and _single_insert(template, request.recipients[0], request, ids[0]):
        return
    sql, notification_values, recipient_values = _insert_plan()
    new_recipient = row_new(Recipient)
    params = [
        [entry.user_id for entry in request.recipients],
        [json_text(entry.data) if entry.data else "{}" for entry in request.recipients],
        [json_text(entry.channels) if entry.channels else "[]" for entry in request.recipients],
        ids,
        *(value(new_recipient) for value in recipient_values),
        json_text(request.data),
        json_text(request.channels),
        *(value(template) for value in notification_values),
        len(ids),
    ]
    for _ in range(_INSERT_ATTEMPTS):
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            if cursor.rowcount == len(ids):
                return
    raise RuntimeError(f"{len(ids)} notifications not stored: their recipients kept being created concurrently")


def _single_insert(template: Notification, entry: RecipientEntry, request: AcceptRequest, id_: uuid.UUID) -> bool:
    """Insert the notification of one recipient found by user id, as _notifications_insert would; False
    (nothing inserted) when no recipient has that user id yet."""
    sql, notification_values = _single_insert_plan()
    params = [id_, json_text({**request.data, **entry.data}), json_text(entry.channels or request.channels),
              *(value(template) for value in notification_values), entry.user_id]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount == 1


# The Notification columns set per recipient; every other one takes the request's value (the template's).
_PER_RECIPIENT = ("id", "recipient", "data", "channels")


def _columns(fields) -> str:
    return ", ".join(connection.ops.quote_name(f.column) for f in fields)


def _placeholders(fields) -> str:
    """One parameter per field, each cast to its column's type."""
    return ", ".join(f"%s::{column_cast_type(f, connection)}" for f in fields)


def _template_fields() -> list:
    """The Notification fields whose values come from the request (the template), not per recipient."""
    return [f for f in Notification._meta.concrete_fields if f.name not in _PER_RECIPIENT]


@functools.cache
def _single_insert_plan() -> tuple[str, list]:
    """_single_insert's statement and the functions that give its Notification values from an instance."""
    quote = connection.ops.quote_name
    fields = _template_fields()
    per_recipient = _columns(Notification._meta.get_field(name) for name in _PER_RECIPIENT)
    sql = textwrap.dedent(f"""\
        INSERT INTO {quote(Notification._meta.db_table)} ({per_recipient}, {_columns(fields)})
        SELECT %s::uuid, r.{quote(Recipient._meta.pk.column)}, %s::jsonb, %s::jsonb, {_placeholders(fields)}
        FROM {quote(Recipient._meta.db_table)} r WHERE r.{quote(Recipient._meta.get_field("user_id").column)} = %s""")
    return sql, [column_value_getter(f, connection) for f in fields]


@functools.cache
def _insert_plan() -> tuple[str, list, list]:
    """_notifications_insert's statement, and the functions that give the values of its Recipient and
    Notification columns, in order, from an instance (as COPY writes them: db.py). Built from the models,
    so a column added later is written too."""
    quote = connection.ops.quote_name
    notification_fields = _template_fields()
    recipient_fields = [f for f in Recipient._meta.concrete_fields if f.name not in ("id", "user_id")]
    recipients = quote(Recipient._meta.db_table)
    id_, user_id = quote(Recipient._meta.pk.column), quote(Recipient._meta.get_field("user_id").column)
    per_recipient = _columns(Notification._meta.get_field(name) for name in _PER_RECIPIENT)
    sql = textwrap.dedent(f"""\
        WITH wanted (user_id, data, channels, id) AS (
            SELECT * FROM unnest(%s::varchar[], %s::jsonb[], %s::jsonb[], %s::uuid[])
        ),
        found AS (
            SELECT r.{id_} AS id, r.{user_id} AS user_id FROM {recipients} r JOIN wanted w ON r.{user_id} = w.user_id
        ),
        created AS (
            INSERT INTO {recipients} ({user_id}, {_columns(recipient_fields)})
            SELECT w.user_id, {_placeholders(recipient_fields)} FROM wanted w
            WHERE w.user_id NOT IN (SELECT user_id FROM found)
            ON CONFLICT ({user_id}) DO NOTHING
            RETURNING {id_} AS id, {user_id} AS user_id
        ),
        known AS (SELECT id, user_id FROM found UNION ALL SELECT id, user_id FROM created)
        INSERT INTO {quote(Notification._meta.db_table)} ({per_recipient}, {_columns(notification_fields)})
        SELECT w.id, k.id, %s::jsonb || w.data, COALESCE(NULLIF(w.channels, '[]'::jsonb), %s::jsonb),
               {_placeholders(notification_fields)}
        FROM wanted w JOIN known k ON k.user_id = w.user_id
        WHERE (SELECT count(*) FROM known) = %s""")
    return (sql, [column_value_getter(f, connection) for f in notification_fields],
            [column_value_getter(f, connection) for f in recipient_fields])

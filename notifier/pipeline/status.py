"""A delivery's status machine: every change of Delivery.status goes through this module, which applies
only legal transitions and records each change as a DeliveryEvent.

    queued ─▶ sending ─▶ sent ─▶ delivered ─▶ opened ─▶ clicked       (the success path, only forward)
      ▲  │       │                    │            │         │
      │  ▼       └─▶ queued (retry), failed, dead, expired, cancelled, suppressed (checked again at send)
     held ─▶ queued, cancelled, expired, suppressed
    sent, delivered, opened, clicked ─▶ bounced (a bounce after `delivered` is recorded)
    sent ─▶ failed (Twilio's late `undelivered`)

failed, bounced, suppressed, expired, cancelled and dead are terminal. A later word from a provider that
would move a delivery backwards on the success path (a `delivered` after `clicked`) or out of a terminal
status is recorded as history (`applied=False`) and changes nothing, once per delivery and status.

Three ways in, one rule book:
- `deliveries_save_status`: the deliver step and others that set the new status on loaded rows (the hot
  path: one UPDATE per group and one INSERT of events), or, with `insert`, on rows not stored yet (a
  campaign chunk's in-app deliveries, sent in the transaction that creates them);
- `deliveries_move`: set-based moves of rows picked by a filter (holds released, cancels, lost claims);
- `delivery_events_apply`: what providers, the pixel, the click redirect and the app report, by delivery.

Each calls the observers with the changes it made (metrics, producer webhooks), in the same transaction.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import datetime

from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from notifier.db import row_new, rows_insert, rows_update
from notifier.models import Delivery, DeliveryEvent, DeliveryStatus as S, EventSource, PendingProviderEvent

log = logging.getLogger(__name__)

SUCCESS_PATH = (S.SENT, S.DELIVERED, S.OPENED, S.CLICKED)
TERMINAL = (S.FAILED, S.BOUNCED, S.SUPPRESSED, S.EXPIRED, S.CANCELLED, S.DEAD)

# status → the statuses it may change to. Anything else is refused (by the worker paths, loudly) or
# recorded without effect (by delivery_events_apply).
TRANSITIONS: dict[str, frozenset[str]] = {
    S.QUEUED: frozenset({S.SENDING, S.HELD, S.CANCELLED, S.EXPIRED, S.SUPPRESSED}),
    S.HELD: frozenset({S.QUEUED, S.CANCELLED, S.EXPIRED, S.SUPPRESSED}),
    # suppressed: the worker's last check before sending (an unsubscribe or a bounce since routing).
    S.SENDING: frozenset({S.SENT, S.DELIVERED, S.QUEUED, S.FAILED, S.DEAD, S.EXPIRED, S.CANCELLED, S.SUPPRESSED}),
    S.SENT: frozenset({S.DELIVERED, S.OPENED, S.CLICKED, S.FAILED, S.BOUNCED}),
    S.DELIVERED: frozenset({S.OPENED, S.CLICKED, S.BOUNCED}),
    S.OPENED: frozenset({S.CLICKED, S.BOUNCED}),
    S.CLICKED: frozenset({S.BOUNCED}),
    **{status: frozenset() for status in TERMINAL},
}
# The first time a delivery reaches these, its timestamp column is set (what /api/v1/stats reads).
FIRST_REACHED_AT = {S.DELIVERED: "delivered_at", S.OPENED: "opened_at", S.CLICKED: "clicked_at",
                    S.FAILED: "failed_at", S.BOUNCED: "failed_at"}
# Reaching a later step of the success path means the earlier ones happened: an open proves delivery.
_IMPLIED = {S.OPENED: (S.DELIVERED,), S.CLICKED: (S.DELIVERED, S.OPENED)}


# A delivery in these has not reached its provider as far as notifier has recorded: a report about it is
# kept until the worker records the send (pending_events_release).
NOT_HANDED_OVER = (S.QUEUED, S.HELD, S.SENDING)


def transition_allowed(old: str, new: str) -> bool:
    return new in TRANSITIONS.get(old, ())


@dataclass
class StatusChange:
    """One applied change, as the observers (metrics, producer webhooks) see it. `delivery` is the row
    as written; on the deliver step's path its `notification` is loaded too."""

    delivery: Delivery
    previous: str
    status: str
    source: str
    at: datetime


@dataclass
class StatusEvent:
    """What a provider, the pixel, the click redirect or the app reports about one delivery."""

    delivery_id: int
    status: str
    source: str
    at: datetime | None = None  # when it happened (the provider's timestamp); default: now
    payload: dict | None = None  # stored on the DeliveryEvent as received
    fields: dict = field(default_factory=dict)  # more Delivery fields to set if it applies (last_error)


class IllegalTransition(Exception):
    """A worker path tried a change the table does not allow: a bug, never the input's fault."""


# Called with the list of StatusChange of every write, inside its transaction. notifier.metrics and the
# producer webhooks register here (apps.py), so this module needs to know neither.
OBSERVERS: list = []


def deliveries_save_status(deliveries: list[Delivery], previous: str, fields: list[str], *,
                           where: dict | None = None, source: str = EventSource.WORKER, at=None,
                           insert: bool = False) -> set:
    """Write `fields` (which include "status") of loaded deliveries that all had status `previous`, where
    the rows still match `where` (a claim token), and record an event for each row written whose status
    changed. Returns the ids written. Raises IllegalTransition before writing anything if a new status is
    not allowed from `previous`.

    `insert`: the deliveries are not stored yet (their ids are drawn now): each is inserted whole, as it
    is after the change, and `fields` and `where` do not apply. One COPY instead of an INSERT and an
    UPDATE of the same rows."""
    at = at or timezone.now()
    for delivery in deliveries:
        if delivery.status != previous and not transition_allowed(previous, delivery.status):
            raise IllegalTransition(f"delivery {delivery.id}: {previous} → {delivery.status}")
        column = FIRST_REACHED_AT.get(delivery.status)
        if column and getattr(delivery, column) is None:
            setattr(delivery, column, at)
    extra = sorted({FIRST_REACHED_AT[d.status] for d in deliveries if d.status in FIRST_REACHED_AT} - set(fields))
    with transaction.atomic(savepoint=False):
        if insert:
            rows_insert(Delivery, deliveries, with_ids=True)
            written = {d.id for d in deliveries}
        else:
            written = rows_update(deliveries, [*fields, *extra], where=where)
        changes = [StatusChange(d, previous, d.status, source, at)
                   for d in deliveries if d.id in written and d.status != previous]
        _changes_record(changes)
    return written


def deliveries_mark_claimed(ids: list, token, at) -> None:
    """queued → sending for the rows `ids` (locked by the caller), stamped with the claim `token`, counting
    the attempt; an event per row. Two statements, whatever the number of rows. Claims are not passed to
    the observers: a worker taking a row is not news to anyone outside."""
    with transaction.atomic(savepoint=False):
        # The status condition makes the claim safe even where SKIP LOCKED is not available (SQLite).
        Delivery.objects.filter(id__in=ids, status=S.QUEUED).update(
            status=S.SENDING, claim_token=token, claimed_at=at, attempts=F("attempts") + 1
        )
        event, delivery = DeliveryEvent._meta, Delivery._meta
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {event.db_table} (delivery_id, status, previous_status, applied, source, at) "
                f"SELECT id, %s, %s, %s, %s, %s FROM {delivery.db_table} WHERE claim_token = %s",
                [S.SENDING, S.QUEUED, True, EventSource.WORKER, at,
                 delivery.get_field("claim_token").get_db_prep_value(token, connection)],
            )


def deliveries_move(delivery_filter: dict, to: str, *, source: str = EventSource.WORKER, fields: dict | None = None,
                    at=None) -> list[StatusChange]:
    """Move the deliveries matching `delivery_filter` (Delivery.objects.filter keywords) to status `to`,
    those whose current status allows it; set `fields` (values or SQL expressions) on them too. Two
    queries and one INSERT of events, whatever the number of rows, and one more to read back what
    expressions wrote. Returns the changes made, each with its row as written."""
    at = at or timezone.now()
    sources = [status for status, targets in TRANSITIONS.items() if to in targets]
    with transaction.atomic(savepoint=False):
        # The rendered content is the only large column, and no observer reads it.
        rows = list(Delivery.objects.select_for_update().filter(**delivery_filter).filter(status__in=sources)
                    .defer("content"))
        if not rows:
            return []
        changes = [StatusChange(row, row.status, to, source, at) for row in rows]
        values = {"status": to, **(fields or {})}
        column = FIRST_REACHED_AT.get(to)
        if column and column not in values:
            values[column] = at
        ids = [row.id for row in rows]
        Delivery.objects.filter(id__in=ids).update(**values)
        computed = [name for name, value in values.items() if hasattr(value, "resolve_expression")]
        for row in rows:
            for name, value in values.items():
                if name not in computed:
                    setattr(row, name, value)
        if computed:  # an SQL expression (the sweeper's last_error): the observers see what it wrote
            written = {id_: values for id_, *values in
                       Delivery.objects.filter(id__in=ids).values_list("id", *computed)}
            for row in rows:
                for name, value in zip(computed, written[row.id]):
                    setattr(row, name, value)
        _changes_record(changes)
    return changes


def delivery_events_apply(events: list[StatusEvent]) -> list[StatusChange]:
    """Apply what providers, the pixel, the click redirect or the app reported. Each event that the table
    allows changes its delivery's status and is recorded; one that it does not (a late `delivered` after
    `clicked`, an open after a bounce) is recorded once as history and changes nothing; a repeat of a
    status already recorded for the delivery is ignored. Events for unknown deliveries are ignored (the
    caller decides what that means). A fixed number of queries, whatever the number of events; the rows
    are locked, so two webhooks about one delivery apply one after the other. Returns the changes."""
    if not events:
        return []
    now = timezone.now()
    with transaction.atomic(savepoint=False):
        deliveries = {d.id: d for d in Delivery.objects.select_for_update().filter(
            id__in={e.delivery_id for e in events}).order_by("id")}
        seen = set(DeliveryEvent.objects.filter(delivery_id__in=deliveries).values_list("delivery_id", "status"))
        changes, history, changed_fields, early = [], [], {}, []
        for event in sorted(events, key=lambda e: (e.at or now)):
            delivery = deliveries.get(event.delivery_id)
            if delivery is None or (delivery.id, event.status) in seen or event.status == delivery.status:
                continue
            at = event.at or now
            if delivery.status in NOT_HANDED_OVER:
                # A report about a send the worker has not recorded yet (SendGrid's webhook can beat the
                # worker's write): applied then, or the worker's write would overwrite it.
                early.append(PendingProviderEvent(delivery=delivery, provider=delivery.provider, status=event.status,
                                                  source=event.source, at=at, payload=event.payload,
                                                  fields=event.fields))
                continue
            seen.add((delivery.id, event.status))
            if not transition_allowed(delivery.status, event.status):
                history.append(DeliveryEvent(delivery=delivery, status=event.status, previous_status=delivery.status,
                                             applied=False, source=event.source, at=at, payload=event.payload))
                _first_reached(delivery, event.status, at, changed_fields)
                continue
            for status in (*_IMPLIED.get(event.status, ()), event.status):
                _first_reached(delivery, status, at, changed_fields, applied=True)
            changes.append(StatusChange(delivery, delivery.status, event.status, event.source, at))
            delivery.status = event.status
            changed_fields.setdefault(delivery.id, set()).add("status")
            for name, value in event.fields.items():
                setattr(delivery, name, value)
                changed_fields[delivery.id].add(name)
            history.append(DeliveryEvent(delivery=delivery, status=event.status, previous_status=changes[-1].previous,
                                         source=event.source, at=at, payload=event.payload))
        for names in {frozenset(names) for names in changed_fields.values()}:
            rows_update([deliveries[id_] for id_, n in changed_fields.items() if frozenset(n) == names], sorted(names))
        DeliveryEvent.objects.bulk_create(history)
        PendingProviderEvent.objects.bulk_create(early)
        _observers_call(changes)
    return changes


# Providers whose callbacks name a delivery only by the message id the send returned, and can arrive before
# the worker has recorded it. (SendGrid's events carry our delivery id in custom_args.)
PENDING_EVENT_PROVIDERS = frozenset({"twilio"})


def provider_events_apply(provider: str, events: list[tuple[str, StatusEvent]]) -> list[StatusChange]:
    """Apply reports that name their delivery by the provider's message id: `events` pairs a message id
    with its StatusEvent (whose delivery_id is filled in here). A report for an id no delivery carries yet
    is kept, and applied when a worker records that id. Run inside a transaction: the message ids are
    locked until it commits (see _message_ids_lock). Three queries plus delivery_events_apply's."""
    ids = {message_id for message_id, _ in events if message_id}
    _message_ids_lock(provider, ids)
    known = dict(Delivery.objects.filter(provider=provider, provider_message_id__in=ids)
                 .values_list("provider_message_id", "id"))
    ready, early = [], []
    for message_id, event in events:
        if not message_id:
            continue
        if message_id in known:
            event.delivery_id = known[message_id]
            ready.append(event)
        else:
            early.append(PendingProviderEvent(provider=provider, provider_message_id=message_id, status=event.status,
                                              source=event.source, at=event.at or timezone.now(),
                                              payload=event.payload, fields=event.fields))
    with transaction.atomic(savepoint=False):
        PendingProviderEvent.objects.bulk_create(early)
        changes = delivery_events_apply(ready)
    for pending in early:
        log.info("%s: status %s for message %s, which no delivery carries yet: kept until one does", provider,
                 pending.status, pending.provider_message_id)
    return changes


def pending_events_release(deliveries: list[Delivery]) -> list[StatusChange]:
    """Apply the reports kept for these deliveries, which a worker has just recorded as sent: those kept by
    delivery (delivery_events_apply, while the row was still the worker's) and those kept by the message id
    they recorded (provider_events_apply). One query, plus the locks of PENDING_EVENT_PROVIDERS' ids."""
    if not deliveries:
        return []
    by_message = {(d.provider, d.provider_message_id): d.id for d in deliveries
                  if d.provider in PENDING_EVENT_PROVIDERS and d.provider_message_id}
    for provider in {provider for provider, _ in by_message}:
        _message_ids_lock(provider, {m for p, m in by_message if p == provider})
    by_delivery = {d.id for d in deliveries}
    pending = [p for p in PendingProviderEvent.objects.filter(
                   Q(delivery_id__in=by_delivery) | Q(provider_message_id__in={m for _, m in by_message}))
               if p.delivery_id in by_delivery or (p.provider, p.provider_message_id) in by_message]
    if not pending:
        return []
    changes = delivery_events_apply([
        StatusEvent(p.delivery_id or by_message[(p.provider, p.provider_message_id)], p.status, p.source, p.at,
                    p.payload, p.fields)
        for p in pending
    ])
    PendingProviderEvent.objects.filter(id__in=[p.id for p in pending]).delete()
    return changes


def _message_ids_lock(provider: str, message_ids) -> None:
    """Take a transaction-level advisory lock per message id (PostgreSQL). A callback looks a message id up
    and keeps its report under the lock; a worker reads the kept reports for the ids it just wrote under
    the same lock. So whichever comes second sees what the first committed: the callback finds the id, or
    the worker finds the report; neither can miss the other. SQLite runs one writer at a time anyway."""
    if connection.vendor != "postgresql" or not message_ids:
        return
    keys = sorted({int.from_bytes(hashlib.blake2b(f"provider-message:{provider}:{m}".encode(), digest_size=8).digest(),
                                  "big", signed=True) for m in message_ids})  # one order: no deadlock
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(key) FROM unnest(%s::bigint[]) WITH ORDINALITY AS t(key, n) "
                       "ORDER BY n", [keys])


def _first_reached(delivery: Delivery, status: str, at, changed_fields: dict, applied: bool = False) -> None:
    """Stamp delivered_at / opened_at / clicked_at / failed_at the first time; the success path's even
    when the status itself stays (a `delivered` reported after the open)."""
    column = FIRST_REACHED_AT.get(status)
    if column and (applied or status in SUCCESS_PATH) and getattr(delivery, column) is None:
        setattr(delivery, column, at)
        changed_fields.setdefault(delivery.id, set()).add(column)


def _changes_record(changes: list[StatusChange]) -> None:
    rows_insert(DeliveryEvent, [
        row_new(DeliveryEvent, delivery_id=c.delivery.id, status=c.status, previous_status=c.previous, source=c.source, at=c.at)
        for c in changes
    ])
    _observers_call(changes)


def _observers_call(changes: list[StatusChange]) -> None:
    if not changes:
        return
    for observer in OBSERVERS:
        observer(changes)

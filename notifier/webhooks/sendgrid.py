"""POST /api/v1/webhooks/sendgrid/events: SendGrid's Event Webhook.

SendGrid posts a JSON array of events, batched (at most every 30 s or 768 KB), each for one message to one
address: https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/event

The request must be signed (Signed Event Webhook, https://www.twilio.com/docs/sendgrid/for-developers/
tracking-events/getting-started-event-webhook-security-features): `X-Twilio-Email-Event-Webhook-Signature`
is a base64 ECDSA-SHA256 signature over the `X-Twilio-Email-Event-Webhook-Timestamp` header followed by the
raw body, checked with the SDK's EventWebhook helper under the public key of SENDGRID_WEBHOOK_PUBLIC_KEY.
A missing or bad signature, a timestamp more than MAX_CLOCK_SKEW_SECONDS from now (a stale request, or a
recorded one replayed later), or no key configured → 403, and nothing is read. A signed body that is not
a JSON array of objects → 400 naming the place; events are deduplicated by `sg_event_id`, so SendGrid's
retry of a batch it thinks failed is a 200 that changes nothing.

An event finds its delivery by the `delivery_id` custom arg the adapter sends (SendGrid echoes custom args
as top-level keys of each event), else by the X-Message-Id the send got back, which is `sg_message_id` up
to its first "." (for a batch, shared by up to 1,000 deliveries: the one sent to the event's `email`).

    delivered                     the delivery becomes delivered
    open                          opened (Apple Mail Privacy Protection opens count: sg_machine_open)
    click                         clicked; the event, with its `url`, is the DeliveryEvent's payload
    bounce, type "bounce"         bounced, and the address is suppressed for email (EmailSuppression)
    bounce, type "blocked"        failed: the receiving server refused this message (content,
                                  reputation), not the address; SendGrid does not retry it
    dropped                       failed; when the reason is "Bounced Address" or "Invalid", the address
                                  is suppressed too
    spamreport, unsubscribe,      the recipient is opted out of email for the type's category
    group_unsubscribe             (services.recipient_unsubscribe, an Unsubscription row)
    processed, deferred, other    nothing (deferred: SendGrid retries for up to 72 h and then bounces)

Status changes go through pipeline/status.py, which records each as a DeliveryEvent with the event as its
payload and refuses what the delivery's status does not allow (a late `delivered` after `clicked`). A
bounce or a failure reopens a notification that was closed as delivered, so its status says so and its
fallback channels still run.
"""
from __future__ import annotations

import hashlib
import logging
import re
import time
from dataclasses import dataclass
from datetime import datetime
from datetime import timezone as dt_timezone
from functools import lru_cache

import orjson
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from sendgrid.helpers.eventwebhook import EventWebhook, EventWebhookHeader

from notifier.metrics import webhook_event_count
from notifier.api.errors import error_response, method_not_allowed
from notifier.models import (
    Delivery,
    DeliveryStatus,
    EmailSuppression,
    EventSource,
    WebhookEventSeen,
)
from notifier.pipeline.dispatch import notifications_reopen_on_late_failures
from notifier.pipeline.status import StatusEvent, delivery_events_apply
from notifier.services import recipient_unsubscribe
from notifier.validation import json_problem

log = logging.getLogger(__name__)

EVENTS_PATH = "/api/v1/webhooks/sendgrid/events"
SIGNATURE_HEADER = EventWebhookHeader.SIGNATURE
TIMESTAMP_HEADER = EventWebhookHeader.TIMESTAMP
# SendGrid signs each post as it sends it; a timestamp further from our clock than this is refused, so a
# captured request cannot be replayed later. Five minutes, as Stripe's and Slack's webhook helpers use.
MAX_CLOCK_SKEW_SECONDS = 300

STATUS_OF_EVENT = {"delivered": DeliveryStatus.DELIVERED, "open": DeliveryStatus.OPENED,
                   "click": DeliveryStatus.CLICKED}
OPT_OUT_EVENTS = {"spamreport", "unsubscribe", "group_unsubscribe"}
HANDLED_EVENTS = {*STATUS_OF_EVENT, "bounce", "dropped", *OPT_OUT_EVENTS}
# SendGrid's drop reasons that mean the address itself is dead (its own suppression lists say so).
DEAD_ADDRESS_DROP_REASONS = {"bounced address", "invalid"}

_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_DELIVERY_ID = re.compile(r"[0-9]{1,18}")


class EventsInvalid(Exception):
    def __init__(self, field: str, problem: str):
        super().__init__(f"{field}: {problem}")
        self.field, self.problem = field, problem


@csrf_exempt
def events_webhook(request):
    if request.method != "POST":
        return method_not_allowed(["POST"])
    raw = request.body
    problem = signature_problem(raw, request.headers.get(SIGNATURE_HEADER, ""),
                                request.headers.get(TIMESTAMP_HEADER, ""))
    if problem:
        log.warning("SendGrid: event webhook refused from %s: %s", request.META.get("REMOTE_ADDR"), problem)
        webhook_event_count(EventSource.SENDGRID, "stale" if problem.endswith(STALE) else "forged")
        return error_response(403, "permission_denied", problem)
    try:
        events = events_parse(raw)
    except EventsInvalid as error:
        log.warning("SendGrid: event webhook body refused: %s", error)
        webhook_event_count(EventSource.SENDGRID, "invalid")
        return error_response(400, "invalid", str(error), {error.field: [error.problem]})
    try:
        counts = events_record(events, signature=request.headers.get(SIGNATURE_HEADER, ""))
    except PostReplayed:
        log.warning("SendGrid: event webhook post from %s replayed (its signature was seen before)",
                    request.META.get("REMOTE_ADDR"))
        webhook_event_count(EventSource.SENDGRID, "stale")
        return error_response(403, "permission_denied", f"{SIGNATURE_HEADER} was seen before: {STALE}")
    for key, result in (("applied", "applied"), ("duplicates", "duplicate"), ("unmatched", "unknown_delivery"),
                        ("ignored", "ignored")):
        if counts[key]:
            webhook_event_count(EventSource.SENDGRID, result, counts[key])
    return JsonResponse(counts)


STALE = "stale or replayed"


def signature_problem(raw: bytes, signature: str, timestamp: str, now: float | None = None) -> str | None:
    """Why this post is not SendGrid's, now, or None when it is: the signature must verify over the
    timestamp and the raw body under the configured public key, and the timestamp must be recent."""
    public_key = settings.NOTIFIER_PROVIDER_CONFIG.get("sendgrid", {}).get("webhook_public_key", "")
    if not public_key:
        return "no SendGrid webhook public key configured (SENDGRID_WEBHOOK_PUBLIC_KEY)"
    if not signature or not timestamp:
        return f"missing {SIGNATURE_HEADER} or {TIMESTAMP_HEADER}"
    if not _TIMESTAMP.fullmatch(timestamp):
        return f"{TIMESTAMP_HEADER} is not a Unix time"
    skew = int(timestamp) - (time.time() if now is None else now)
    if abs(skew) > MAX_CLOCK_SKEW_SECONDS:
        return (f"{TIMESTAMP_HEADER} is {abs(skew):.0f} s in the {'future' if skew > 0 else 'past'}, more than "
                f"{MAX_CLOCK_SKEW_SECONDS} s: {STALE}")
    try:
        key = webhook_public_key_load(public_key)
    except ValueError as error:
        log.error("SendGrid: SENDGRID_WEBHOOK_PUBLIC_KEY is not a public key (%s): every event post is refused",
                  error)
        return "the configured SendGrid webhook public key cannot be read"
    try:
        payload = raw.decode("utf-8")
        valid = EventWebhook().verify_signature(payload, signature, timestamp, key)
    except (ValueError, TypeError):  # a body not UTF-8, a signature not base64, a key that is not EC
        valid = False
    return None if valid else f"{SIGNATURE_HEADER} does not verify"


@lru_cache(maxsize=4)
def webhook_public_key_load(public_key: str):
    """The key as SendGrid shows it (base64 DER SubjectPublicKeyInfo), loaded once per process."""
    return EventWebhook().convert_public_key_to_ecdsa(public_key.strip())


def events_parse(raw: bytes) -> list[dict]:
    """The events of a signed body, or EventsInvalid naming the place: a JSON array of objects whose
    strings and depth notifier.validation accepts (the payloads are stored as jsonb)."""
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise EventsInvalid("request", "Not valid JSON.") from None
    if not isinstance(document, list):
        raise EventsInvalid("request", "Must be a JSON array of events.")
    if found := json_problem(document):
        path, problem = found
        raise EventsInvalid(path or "request", problem)
    for index, event in enumerate(document):
        if not isinstance(event, dict):
            raise EventsInvalid(f"[{index}]", "Must be an object (one event).")
    return document


@dataclass(frozen=True)
class _Target:
    """What an event needs of its delivery."""

    delivery_id: int
    address: str
    notification: object
    recipient_id: int
    type_key: str
    category: str
    provider_message_id: str = ""


class PostReplayed(Exception):
    """A signed post whose signature was seen before: a captured request sent again within the window."""


def events_record(events: list[dict], signature: str = "") -> dict:
    """Apply a batch of verified events, each at most once (by sg_event_id), in one transaction: a batch
    that fails half-way is retried by SendGrid whole, and nothing of it is kept. A post's `signature`
    is recorded with it, so the same signed request posted again raises PostReplayed and changes nothing.
    Returns counts for the answer and the log. A fixed number of queries, but for the opt-outs (one call
    each, rare)."""
    counts = {"received": len(events), "applied": 0, "duplicates": 0, "unmatched": 0, "ignored": 0}
    handled = []
    for event in events:
        if isinstance(event.get("event"), str) and event["event"] in HANDLED_EVENTS and _event_id(event):
            handled.append(event)
        else:
            counts["ignored"] += 1
    with transaction.atomic():
        if signature and not _first_seen({"post:" + hashlib.sha256(signature.encode()).hexdigest()}):
            raise PostReplayed
        first_seen = _first_seen({_event_id(e) for e in handled})
        fresh, taken = [], set()
        for event in handled:
            event_id = _event_id(event)
            if event_id in first_seen and event_id not in taken:
                taken.add(event_id)
                fresh.append(event)
            else:
                counts["duplicates"] += 1
        targets = _targets_find(fresh)
        status_events, suppressions, opt_outs = [], [], []
        for event in fresh:
            target = targets.get(id(event))
            if _suppresses(event):
                suppressions.append(_suppression(event, target))
            if target is None:
                counts["unmatched"] += 1
                continue
            if event["event"] in OPT_OUT_EVENTS:
                opt_outs.append((event, target))
            elif status_event := _status_event(event, target):
                status_events.append(status_event)
        changes = delivery_events_apply(status_events)
        notifications_reopen_on_late_failures(changes)
        EmailSuppression.objects.bulk_create([s for s in suppressions if s.address], ignore_conflicts=True)
        unsubscribed = [
            recipient_unsubscribe(target.recipient_id, target.category, source=f"sendgrid {event['event']}",
                                  channel="email", type_key=target.type_key, notification=target.notification)
            for event, target in opt_outs
        ]
        counts["applied"] = len(changes) + sum(record is not None for record in unsubscribed)
    log.info("SendGrid: %(received)s events: %(applied)s applied, %(duplicates)s repeated, %(unmatched)s for no "
             "known delivery, %(ignored)s ignored", counts)
    return counts


def _event_id(event: dict) -> str:
    event_id = event.get("sg_event_id")
    return event_id if isinstance(event_id, str) and 0 < len(event_id) <= 255 else ""


def _first_seen(event_ids: set[str]) -> set[str]:
    """Record these event ids as seen; returns those that were not seen before. Two posts of one event
    at once: the second INSERT waits for the first's transaction and then finds the row."""
    if not event_ids:
        return set()
    table = WebhookEventSeen._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (source, event_id, received_at) SELECT %s, unnest(%s::text[]), now() "
            "ON CONFLICT (source, event_id) DO NOTHING RETURNING event_id",
            [EventSource.SENDGRID, sorted(event_ids)],
        )
        return {row[0] for row in cursor.fetchall()}


def _delivery_id(event: dict) -> int | None:
    value = event.get("delivery_id")
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return int(value) if isinstance(value, str) and _DELIVERY_ID.fullmatch(value) else None


def _message_id(event: dict) -> str:
    """The X-Message-Id of the send: sg_message_id is "<X-Message-Id>.<filter and server ids>"."""
    value = event.get("sg_message_id")
    return value.split(".", 1)[0][:255] if isinstance(value, str) else ""


def _targets_find(events: list[dict]) -> dict[int, _Target]:
    """The delivery of each event (by id(event)) that has one: by our delivery_id custom arg, else by the
    message id and, for a batch (up to 1,000 deliveries share its X-Message-Id), the event's address. One
    query; a second only for events whose delivery id is missing or unknown, so that the deliveries of every
    batch an event names are not read for events that name their own."""
    found: dict[int, _Target] = {}
    ids = {d for e in events if (d := _delivery_id(e))}
    if ids:
        by_id = {target.delivery_id: target for target in _targets_of(Q(id__in=ids))}
        for event in events:
            target = by_id.get(_delivery_id(event))
            if target is not None:
                found[id(event)] = target
    unmatched = [e for e in events if id(e) not in found and _message_id(e)]
    if not unmatched:
        return found
    by_message_id: dict[str, list[_Target]] = {}
    for target in _targets_of(Q(provider="sendgrid", provider_message_id__in={_message_id(e) for e in unmatched})):
        by_message_id.setdefault(target.provider_message_id, []).append(target)
    for event in unmatched:
        candidates = by_message_id.get(_message_id(event), [])
        if len(candidates) > 1:  # a batch: the one sent to this event's address
            address = str(event.get("email") or "").lower()
            candidates = [target for target in candidates if target.address.lower() == address]
        if len(candidates) == 1:
            found[id(event)] = candidates[0]
    return found


def _targets_of(condition: Q) -> list[_Target]:
    rows = (Delivery.objects.filter(condition, channel="email")
            .select_related("notification__type")
            .only("id", "target", "provider_message_id", "notification__recipient", "notification__type__key",
                  "notification__type__category"))
    return [_Target(row.id, row.target, row.notification, row.notification.recipient_id, row.notification.type.key,
                    row.notification.type.category, row.provider_message_id) for row in rows]


def _event_time(event: dict) -> datetime | None:
    value = event.get("timestamp")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 32503680000:
        return None
    return datetime.fromtimestamp(value, tz=dt_timezone.utc)


def _text(event: dict, name: str) -> str:
    value = event.get(name)
    return str(value)[:500] if isinstance(value, (str, int, float)) and not isinstance(value, bool) else ""


def _status_event(event: dict, target: _Target) -> StatusEvent | None:
    kind, at = event["event"], _event_time(event)
    status, fields = STATUS_OF_EVENT.get(kind), {}
    reason = " ".join(part for part in (_text(event, "status"), _text(event, "reason")) if part)
    if kind == "bounce":
        hard = _hard_bounce(event)
        status = DeliveryStatus.BOUNCED if hard else DeliveryStatus.FAILED
        fields["last_error"] = f"sendgrid {'bounce' if hard else 'blocked'}: {reason or 'no reason given'}"
    elif kind == "dropped":
        status = DeliveryStatus.FAILED
        fields["last_error"] = f"sendgrid dropped: {reason or 'no reason given'}"
    if status is None:
        return None
    return StatusEvent(target.delivery_id, status, source=EventSource.SENDGRID, at=at, payload=event, fields=fields)


def _hard_bounce(event: dict) -> bool:
    """A bounce event's `type` is "bounce" (the address is dead) or "blocked" (this message was refused);
    events from before SendGrid added the field are hard bounces."""
    return event.get("type", "bounce") == "bounce"


def _suppresses(event: dict) -> bool:
    if event["event"] == "bounce":
        return _hard_bounce(event)
    return event["event"] == "dropped" and _text(event, "reason").strip().lower() in DEAD_ADDRESS_DROP_REASONS


def _suppression(event: dict, target: _Target | None) -> EmailSuppression:
    """The suppression a hard bounce or a dead-address drop makes: of the address SendGrid names (a
    verified event's word is enough, even for a message we cannot match), else the delivery's."""
    address = event.get("email") if isinstance(event.get("email"), str) and "@" in event["email"] else ""
    address = (address or (target.address if target else "")).strip().lower()[:254]
    reason = (EmailSuppression.Reason.HARD_BOUNCE if event["event"] == "bounce"
              else EmailSuppression.Reason.INVALID_ADDRESS)
    detail = " ".join(part for part in (_text(event, "status"), _text(event, "reason")) if part)
    return EmailSuppression(address=address, reason=reason, source="sendgrid", detail=detail,
                            delivery_id=target.delivery_id if target else None,
                            created_at=_event_time(event) or datetime.now(tz=dt_timezone.utc))

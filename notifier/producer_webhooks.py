"""Producer webhooks: status events POSTed to a producer's URL, signed, batched and retried from the database.

    status change (pipeline/status.py) ─observer─▶ ProducerEvent rows (same transaction: the outbox)
    beat (notifier.send_producer_webhooks) ─▶ claim due rows per producer ─▶ POST {"events": [...]} ─▶ 2xx: sent

- Recording: `producer_events_record` is a status observer (registered in apps.py). It runs on the deliver
  step's hot path for every group of outcomes, so when no producer has a webhook it costs no query (the
  set of producers with one is cached in process memory for NOTIFIER_PROCESS_CACHE_SECONDS), and otherwise
  at most one query for the notifications' producers (none on the deliver path, which has them loaded)
  and one INSERT. `producer_event_unsubscribed` records a user's opt-out (services.recipient_unsubscribe).
- Ids: an event's id is derived from what it reports (delivery × status, unsubscription), so recording it
  twice is harmless and the producer dedupes by `id` across retries and replays.
- Sending: `producer_webhooks_send` claims up to BATCH_SIZE due events of a producer with a lease (the claim
  moves next_attempt_at to the lease's end, so an event whose sender died mid-POST is simply due again
  then: at least once, never lost), POSTs them in one request signed like Stripe's webhooks
  (`Notifier-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>." + body>`), and marks them sent on a 2xx.
  On anything else each event backs off exponentially with jitter, the producer is paused until the
  earliest retry (a down endpoint gets one request per backoff step, not one per tick), and an event still
  refused RETRY_WINDOW after it was recorded becomes failed: visible in admin, where a replay sends it again.
- Keeping: events are deleted NOTIFIER_PRODUCER_EVENT_RETENTION_DAYS after they were recorded (hourly beat).
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import random
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta

import orjson
import requests
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.db.models.signals import post_delete, post_save
from django.utils import timezone

from notifier.db import rows_update
from notifier.models import Delivery, DeliveryStatus as S, Notification, Producer, ProducerEvent, ProducerEventStatus
from notifier.pipeline import status
from notifier.process_cache import ProcessCache

log = logging.getLogger(__name__)

# The delivery statuses a producer hears about, and the event type of each.
DELIVERY_EVENT_TYPES = {
    S.DELIVERED: "delivery.delivered",
    S.OPENED: "delivery.opened",
    S.CLICKED: "delivery.clicked",
    S.FAILED: "delivery.failed",
    S.BOUNCED: "delivery.bounced",
    S.DEAD: "delivery.dead",
}
UNSUBSCRIBED = "recipient.unsubscribed"
EVENT_TYPES = [*DELIVERY_EVENT_TYPES.values(), UNSUBSCRIBED]
SIGNATURE_HEADER = "Notifier-Signature"
USER_AGENT = "notifier-webhooks/1"
# The namespace of the derived event ids (uuid5): fixed forever, or ids would change under producers.
_EVENT_ID_NAMESPACE = uuid.UUID("6f0e1a52-41c4-4d0b-9a7e-2f4c1d3b8a90")


def _setting(name: str, default):
    return getattr(settings, name, default)


def batch_size() -> int:
    """Events per POST."""
    return _setting("NOTIFIER_PRODUCER_WEBHOOK_BATCH_SIZE", 100)


def request_timeout() -> float:
    """Seconds to connect, and to wait for each read of the answer."""
    return _setting("NOTIFIER_PRODUCER_WEBHOOK_TIMEOUT_SECONDS", 5.0)


def lease_seconds() -> float:
    """How long a claim lasts: above the timeout of a POST, so only a dead sender's claim runs out."""
    return _setting("NOTIFIER_PRODUCER_WEBHOOK_LEASE_SECONDS", 60.0)


def retry_window() -> timedelta:
    return timedelta(seconds=_setting("NOTIFIER_PRODUCER_WEBHOOK_RETRY_WINDOW_SECONDS", 24 * 3600))


def run_budget_seconds() -> float:
    """A beat run starts no new POST after this long, so it stays short on the maintenance queue."""
    return _setting("NOTIFIER_PRODUCER_WEBHOOK_RUN_SECONDS", 20.0)


def retry_delay(attempts: int) -> float:
    """Exponential backoff with jitter: 10 s, 20 s, 40 s … up to an hour, each between half and all of it."""
    base = _setting("NOTIFIER_PRODUCER_WEBHOOK_RETRY_BASE_SECONDS", 10.0)
    ceiling = min(_setting("NOTIFIER_PRODUCER_WEBHOOK_RETRY_MAX_SECONDS", 3600.0), base * 2 ** max(0, attempts - 1))
    return random.uniform(ceiling / 2, ceiling)


# ----- which producers have a webhook (read on the hot path)

producers_with_webhook_cache = ProcessCache(max_entries=1)


def producers_with_webhook() -> frozenset[int]:
    """Ids of the producers with a webhook URL: a query at most once per NOTIFIER_PROCESS_CACHE_SECONDS
    per process; a producer saved in this process applies at once, in others within that time."""
    return producers_with_webhook_cache.get("ids", lambda: frozenset(
        Producer.objects.exclude(webhook_url="").values_list("id", flat=True)))


def _reload_producers_with_webhook(sender, **kwargs):
    # Reloaded at once rather than forgotten: a producer is saved rarely (admin), and the next status change,
    # on the deliver step's hot path, then finds the set loaded.
    producers_with_webhook_cache.clear()
    producers_with_webhook()


post_save.connect(_reload_producers_with_webhook, sender=Producer, dispatch_uid="notifier.producer_webhooks.save")
post_delete.connect(_reload_producers_with_webhook, sender=Producer, dispatch_uid="notifier.producer_webhooks.delete")


# ----- recording events

@dataclass(frozen=True)
class _NotificationFacts:
    producer_id: int
    user_id: str
    type_key: str
    idempotency_key: str


def producer_events_record(changes: list) -> None:
    """The status observer: record an event for each change a producer with a webhook hears about
    (DELIVERY_EVENT_TYPES), inside the change's transaction. No query when no producer has a webhook or no
    change is of a reported status; otherwise at most one SELECT (none on the deliver path) and one INSERT."""
    reported = [change for change in changes if change.status in DELIVERY_EVENT_TYPES]
    if not reported:
        return
    hooked = producers_with_webhook()
    if not hooked:
        return
    facts = _notification_facts([change.delivery for change in reported], hooked)
    now = timezone.now()
    events = []
    for change in reported:
        delivery = change.delivery
        fact = facts.get(delivery.notification_id)
        if fact is None or fact.producer_id not in hooked:
            continue
        data = {
            "notification_id": str(delivery.notification_id),
            "delivery_id": delivery.id,
            "channel": delivery.channel,
            "status": change.status,
            "previous_status": change.previous,
            "source": change.source,
            "at": change.at.isoformat(),
            "user_id": fact.user_id,
            "type": fact.type_key,
            "idempotency_key": fact.idempotency_key or None,
        }
        if change.status in (S.FAILED, S.BOUNCED, S.DEAD) and "last_error" not in delivery.get_deferred_fields():
            data["error"] = delivery.last_error
        # The notification's id (random) makes it unique across databases, the delivery and status in it.
        event_id = uuid.uuid5(_EVENT_ID_NAMESPACE, f"delivery:{delivery.notification_id}:{delivery.id}:{change.status}")
        events.append(_event(event_id,
                             fact.producer_id, DELIVERY_EVENT_TYPES[change.status], data, now,
                             notification_id=delivery.notification_id, delivery_id=delivery.id))
    if events:
        ProducerEvent.objects.bulk_create(events, ignore_conflicts=True)


def producer_event_unsubscribed(unsubscription) -> ProducerEvent | None:
    """Record a `recipient.unsubscribed` event for the producer of the notification the opt-out came from
    (an Unsubscription without a notification, such as an operator's, reports to no one). Idempotent:
    calling it twice for one unsubscription records one event. Returns the event, or None."""
    if unsubscription.notification_id is None:
        return None
    hooked = producers_with_webhook()
    if not hooked:
        return None
    producer_id = Notification.objects.filter(id=unsubscription.notification_id).values_list(
        "producer_id", flat=True).first()
    if producer_id not in hooked:
        return None
    data = {
        "unsubscription_id": unsubscription.id,
        "user_id": unsubscription.recipient.user_id,
        "category": unsubscription.category,
        "channel": unsubscription.channel,
        "type": unsubscription.type_key or None,
        "notification_id": str(unsubscription.notification_id),
        "source": unsubscription.source,
        "at": unsubscription.created_at.isoformat(),
    }
    event_id = uuid.uuid5(_EVENT_ID_NAMESPACE, f"unsubscription:{unsubscription.notification_id}:{unsubscription.id}")
    event = _event(event_id, producer_id,
                   UNSUBSCRIBED, data, timezone.now(), notification_id=unsubscription.notification_id)
    ProducerEvent.objects.bulk_create([event], ignore_conflicts=True)
    return event


def _event(event_id, producer_id, event_type, data, now, **links) -> ProducerEvent:
    return ProducerEvent(id=event_id, producer_id=producer_id, type=event_type, data=data, created_at=now,
                         next_attempt_at=now, give_up_at=now + retry_window(), **links)


def _notification_facts(deliveries: list[Delivery], hooked: frozenset[int]) -> dict:
    """{notification id: its producer, user id, type key and idempotency key}, from the loaded rows where
    the deliver step loaded them, else in one query (of the notifications of producers with a webhook)."""
    facts, missing = {}, set()
    for delivery in deliveries:
        notification = _loaded(delivery, "notification")
        if (notification is not None and "idempotency_key" not in notification.get_deferred_fields()
                and _loaded(notification, "recipient") is not None and _loaded(notification, "type") is not None):
            facts[notification.id] = _NotificationFacts(notification.producer_id, notification.recipient.user_id,
                                                        notification.type.key, notification.idempotency_key)
        else:
            missing.add(delivery.notification_id)
    if missing:
        rows = Notification.objects.filter(id__in=missing, producer_id__in=hooked).values_list(
            "id", "producer_id", "recipient__user_id", "type__key", "idempotency_key")
        facts.update({row[0]: _NotificationFacts(*row[1:]) for row in rows})
    return facts


def _loaded(instance, relation: str):
    """The related row if it is already loaded on `instance`, else None (never a query)."""
    field = type(instance)._meta.get_field(relation)
    return getattr(instance, relation) if field.is_cached(instance) else None


# ----- the body and its signature

def event_body(event: ProducerEvent) -> dict:
    return {"id": str(event.id), "type": event.type, "created_at": event.created_at.isoformat(), "data": event.data}


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    """`t=<timestamp>,v1=<hex HMAC-SHA256 of "<timestamp>." + body, keyed with the secret>` (Stripe's scheme)."""
    digest = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


# ----- sending

def producer_webhooks_send() -> int:
    """Send the due events of every producer with a webhook that is not paused, in batches, within
    run_budget_seconds(). Returns how many events were sent (a 2xx answered)."""
    started = time.monotonic()
    now = timezone.now()
    # A producer without a secret (its URL set by an UPDATE, not save()) is skipped: never sent unsigned.
    producers = list(Producer.objects.exclude(webhook_url="").exclude(webhook_secret="").filter(
        Q(webhook_paused_until__isnull=True) | Q(webhook_paused_until__lte=now)))
    random.shuffle(producers)  # a producer whose endpoint is slow does not always leave the others last
    sent = 0
    with requests.Session() as session:
        for producer in producers:
            while time.monotonic() - started < run_budget_seconds():
                events = producer_events_claim(producer, batch_size())
                if not events:
                    break
                error = producer_events_post(session, producer, events)
                producer_events_record_outcome(producer, events, error)
                if error:
                    break
                sent += len(events)
                if len(events) < batch_size():
                    break
    return sent


def producer_events_claim(producer: Producer, limit: int) -> list[ProducerEvent]:
    """Claim up to `limit` due events of `producer`, oldest first, for lease_seconds(). Three queries."""
    token, now = uuid.uuid4(), timezone.now()
    with transaction.atomic():
        ids = list(ProducerEvent.objects.select_for_update(skip_locked=True)
                   .filter(producer=producer, status=ProducerEventStatus.PENDING, next_attempt_at__lte=now)
                   .order_by("next_attempt_at").values_list("id", flat=True)[:limit])
        if not ids:
            return []
        ProducerEvent.objects.filter(id__in=ids, status=ProducerEventStatus.PENDING).update(
            claim_token=token, claimed_at=now, next_attempt_at=now + timedelta(seconds=lease_seconds()),
            attempts=F("attempts") + 1)
    return list(ProducerEvent.objects.filter(claim_token=token).order_by("created_at", "id"))


def producer_events_post(session: requests.Session, producer: Producer, events: list[ProducerEvent]) -> str:
    """POST the events in one signed request. Returns "" on a 2xx, else what went wrong."""
    body = orjson.dumps({"events": [event_body(event) for event in events]})
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        SIGNATURE_HEADER: signature_header(producer.webhook_secret, int(time.time()), body),
    }
    try:
        # No redirects: a signed request goes only where the operator pointed it. The body of the answer
        # is read only as far as the error message needs.
        with session.post(producer.webhook_url, data=body, headers=headers, timeout=request_timeout(),
                          allow_redirects=False, stream=True) as response:
            if 200 <= response.status_code < 300:
                return ""
            if response.is_redirect:
                return f"HTTP {response.status_code}: a redirect to {response.headers['Location'][:200]}, not followed"
            answer = response.raw.read(200, decode_content=True).decode(errors="replace")
            return f"HTTP {response.status_code}: {answer}".strip()
    except requests.RequestException as error:
        return f"{type(error).__name__}: {error}"


def producer_events_record_outcome(producer: Producer, events: list[ProducerEvent], error: str) -> None:
    """Write a POST's outcome on the events whose claim still holds: sent, or the next attempt with
    backoff (failed once the retry window has ended), and pause or resume the producer."""
    now = timezone.now()
    token = events[0].claim_token
    if not error:
        ProducerEvent.objects.filter(id__in=[event.id for event in events], claim_token=token).update(
            status=ProducerEventStatus.SENT, sent_at=now, claim_token=None, last_error="")
        if producer.webhook_paused_until is not None:
            Producer.objects.filter(id=producer.id).update(webhook_paused_until=None)
        log.info("producer webhooks: %s events sent to producer %s", len(events), producer.name)
        return
    retries = []
    for event in events:
        event.claim_token, event.last_error = None, error[:2000]
        event.next_attempt_at = now + timedelta(seconds=retry_delay(event.attempts))
        if event.next_attempt_at > event.give_up_at:
            event.status = ProducerEventStatus.FAILED
        else:
            retries.append(event.next_attempt_at)
    rows_update(events, ["status", "claim_token", "last_error", "next_attempt_at"], where={"claim_token": token})
    paused_until = min(retries, default=now + timedelta(seconds=retry_delay(1)))
    Producer.objects.filter(id=producer.id).update(webhook_paused_until=paused_until)
    log.warning("producer webhooks: producer %s refused %s events (%s); %s failed for good, paused until %s",
                producer.name, len(events), error, len(events) - len(retries), paused_until.isoformat())


def producer_events_replay(events) -> int:
    """Send these events again (a queryset), now, with a new retry window; their producers' pauses end.
    Returns how many were reset."""
    now = timezone.now()
    producer_ids = set(events.values_list("producer_id", flat=True))
    count = events.update(status=ProducerEventStatus.PENDING, next_attempt_at=now, give_up_at=now + retry_window(),
                          attempts=0, claim_token=None, last_error="", sent_at=None)
    Producer.objects.filter(id__in=producer_ids).update(webhook_paused_until=None)
    return count


PURGE_BATCH_SIZE = 5000


def producer_events_purge(now=None, batch_size: int = PURGE_BATCH_SIZE) -> int:
    """Delete events recorded more than NOTIFIER_PRODUCER_EVENT_RETENTION_DAYS (7) ago, whatever their
    status (a pending one is long past its retry window), a batch at a time. Returns how many."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=_setting("NOTIFIER_PRODUCER_EVENT_RETENTION_DAYS", 7))
    deleted = 0
    while True:
        ids = list(ProducerEvent.objects.filter(created_at__lt=cutoff).order_by("created_at")
                   .values_list("id", flat=True)[:batch_size])
        if not ids:
            return deleted
        deleted += ProducerEvent.objects.filter(id__in=ids).delete()[0]
        if len(ids) < batch_size:
            return deleted


# Importing this module (apps.py, ready) registers the observer, once.
if producer_events_record not in status.OBSERVERS:
    status.OBSERVERS.append(producer_events_record)

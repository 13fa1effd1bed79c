"""Celery tasks: thin wake-up handlers. Each drains one queue's due rows through a plain pipeline function.

Messages carry a queue's name, never payloads or per-delivery ids (docs/architecture.md, "Throughput
rules"); the database rows are the work. A task that fails on the database or Redis retries with backoff; if it still
fails, the sweeper wakes the queue again.
"""
from celery import shared_task
from django.db import DatabaseError
from redis import RedisError

from notifier.campaigns import fanout
from notifier.campaigns import service as campaign_service
from notifier.inbox import inbox_purge
from notifier.pipeline.digest import digests_flush
from notifier.pipeline.dispatch import deliver_due
from notifier.pipeline.escalation import release_due_escalations
from notifier.pipeline.holds import release_due_holds
from notifier.pipeline.route import route_due
from notifier.pipeline.sweep import sweep as sweep_once
from notifier.pipeline.wake import clear_flag
from notifier.producer_webhooks import producer_events_purge, producer_webhooks_send

_RETRY = {
    "autoretry_for": (DatabaseError, RedisError),
    "retry_backoff": True,
    "retry_backoff_max": 60,
    "retry_jitter": True,
    "max_retries": 5,
}


@shared_task(name="notifier.route", **_RETRY)
def route(priority: str) -> int:
    return route_due(priority)


@shared_task(name="notifier.deliver", **_RETRY)
def deliver(channel: str, priority: str) -> int:
    return deliver_due(channel, priority)


@shared_task(name="notifier.sweep")
def sweep() -> dict:
    return sweep_once()


@shared_task(name="notifier.release_holds", **_RETRY)
def release_holds() -> int:
    return release_due_holds()


@shared_task(name="notifier.release_escalations", **_RETRY)
def release_escalations() -> int:
    return release_due_escalations()


@shared_task(name="notifier.flush_digests", **_RETRY)
def flush_digests() -> int:
    return digests_flush()


@shared_task(name="notifier.purge_inbox", **_RETRY)
def purge_inbox() -> int:
    return inbox_purge()


@shared_task(name="notifier.send_producer_webhooks", **_RETRY)
def send_producer_webhooks() -> int:
    return producer_webhooks_send()


@shared_task(name="notifier.purge_producer_events", **_RETRY)
def purge_producer_events() -> int:
    return producer_events_purge()


@shared_task(name="notifier.campaign_advance", **_RETRY)
def campaign_advance(campaign_id: str) -> int:
    clear_flag(f"campaign:{campaign_id}")
    return fanout.campaign_advance(campaign_id)


@shared_task(name="notifier.campaign_chunk", **_RETRY)
def campaign_chunk(campaign_id: str, number: int) -> int:
    return fanout.campaign_chunk_run(campaign_id, number)


@shared_task(name="notifier.campaigns_tick", **_RETRY)
def campaigns_tick() -> int:
    return fanout.campaigns_tick()


@shared_task(name="notifier.campaign_cancel_rest", **_RETRY)
def campaign_cancel_rest(campaign_id: str, after_recipient_id: int = 0) -> int:
    """What a cancelled campaign has not sent, cancelled a slice at a time; a run that stops before the end
    publishes the next with where it stopped, so no run nears the time limit."""
    cancelled, cursor = campaign_service.campaign_cancel_rest(campaign_id, after_recipient_id)
    if cursor is not None:
        campaign_cancel_rest.apply_async(args=[campaign_id, cursor])
    return cancelled

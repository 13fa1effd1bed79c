"""Wake-ups: a Celery message tells a worker "this queue has due rows", and at most one is pending per queue.

The rows are the queue (DESIGN.md, "Throughput rules"): a burst of 10,000 accepted notifications costs a
handful of messages, not 10,000. A Redis flag (SET NX with a TTL) marks a pending wake-up; the task clears
it before it claims rows, so a row committed after the claim always finds the flag clear and wakes again.
A lost wake-up (broker down, Redis flushed) costs at most one sweep interval: the beat sweeper wakes every
queue that has due rows.
"""
import logging
from functools import cache

import redis
from django.conf import settings

log = logging.getLogger(__name__)

FLAG_PREFIX = "notifier:wake:"
# Longer than a wake-up normally waits in its queue; after that a second one may be published (harmless).
FLAG_TTL_SECONDS = 30


@cache
def redis_client() -> redis.Redis:
    return redis.Redis.from_url(
        settings.REDIS_URL,
        socket_connect_timeout=settings.NOTIFIER_PUBLISH_TIMEOUT_SECONDS,
        socket_timeout=settings.NOTIFIER_PUBLISH_TIMEOUT_SECONDS,
    )


def route_queue(priority: str) -> str:
    return f"route.{priority}"


def deliver_queue(channel: str, priority: str) -> str:
    return f"{channel}.{priority}"


def wake_route(priority: str) -> bool:
    from notifier.tasks import route

    return _wake(route_queue(priority), route, (priority,))


def wake_deliver(channel: str, priority: str) -> bool:
    from notifier.tasks import deliver

    return _wake(deliver_queue(channel, priority), deliver, (channel, priority))


def clear_flag(queue: str) -> None:
    """Called by a task before it claims rows: from now on, new rows need a new wake-up."""
    try:
        redis_client().delete(FLAG_PREFIX + queue)
    except redis.RedisError as error:
        log.warning("wake: could not clear flag of %s: %s", queue, error)


def _wake(queue: str, task, args: tuple) -> bool:
    """Publish a wake-up for `queue` unless one is pending. Never raises: returns False when the
    broker or Redis is unreachable, and the sweeper publishes later."""
    flag = FLAG_PREFIX + queue
    try:
        if not redis_client().set(flag, "1", nx=True, ex=FLAG_TTL_SECONDS):
            return True  # one is pending already
    except redis.RedisError as error:
        log.warning("wake: Redis unreachable (%s); publishing to %s without the flag", error, queue)
    try:
        task.apply_async(args=args, queue=queue, routing_key=queue, retry=False)
        return True
    except Exception as error:  # kombu raises several types; none may reach the producer's request
        log.warning("wake: could not publish to %s: %s; the sweeper will retry", queue, error)
        try:
            redis_client().delete(flag)
        except redis.RedisError:
            pass
        return False

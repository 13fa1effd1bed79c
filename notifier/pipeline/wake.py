"""Wake-ups: a Celery message tells a worker "this queue has due rows", and at most one is pending per queue.

The rows are the queue (DESIGN.md, "Throughput rules"): a burst of 10,000 accepted notifications costs a
handful of messages, not 10,000. A Redis flag (SET NX with a TTL) marks a pending wake-up; the task clears
it before it claims rows, so a row committed after the claim always finds the flag clear and wakes again.
A lost wake-up (broker down, Redis flushed) costs at most one sweep interval: the beat sweeper wakes every
queue that has due rows, and for rows due longer than a sweep interval it publishes even when the flag is
set (`force`), since the flag's message may be the one that was lost.
"""
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
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


def wake_route(priority: str, force: bool = False) -> bool:
    from notifier.tasks import route

    return _wake(route_queue(priority), route, (priority,), force)


def wake_deliver(channel: str, priority: str, force: bool = False) -> bool:
    from notifier.tasks import deliver

    return _wake(deliver_queue(channel, priority), deliver, (channel, priority), force)


def clear_flag(queue: str) -> None:
    """Called by a task before it claims rows: from now on, new rows need a new wake-up."""
    try:
        redis_client().delete(FLAG_PREFIX + queue)
    except redis.RedisError as error:
        log.warning("wake: could not clear flag of %s: %s", queue, error)


def _wake(queue: str, task, args: tuple, force: bool = False) -> bool:
    """Publish a wake-up for `queue` unless one is pending, or even then with `force`. Never raises, and
    returns within NOTIFIER_PUBLISH_TIMEOUT_SECONDS even when the broker accepts connections but never
    answers (then the publish goes on in the background and the sweeper covers the gap). Returns whether
    it published or found a wake-up pending."""
    with _publisher_lock:
        global _publishes_in_flight
        if _publishes_in_flight >= _MAX_PUBLISHES_IN_FLIGHT:
            log.warning("wake: earlier publishes are stuck; leaving %s to the sweeper", queue)
            return False
        _publishes_in_flight += 1
    future = _publisher().submit(_publish, queue, task, args, force)
    try:
        return future.result(timeout=settings.NOTIFIER_PUBLISH_TIMEOUT_SECONDS)
    except FuturesTimeout:
        log.warning("wake: publishing to %s took over %ss; the sweeper will retry", queue,
                    settings.NOTIFIER_PUBLISH_TIMEOUT_SECONDS)
        return False


def _publish(queue: str, task, args: tuple, force: bool) -> bool:
    global _publishes_in_flight
    flag = FLAG_PREFIX + queue
    try:
        try:
            if not redis_client().set(flag, "1", nx=not force, ex=FLAG_TTL_SECONDS):
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
    finally:
        with _publisher_lock:
            _publishes_in_flight -= 1


# One publisher thread per process: it lets a request give up on a hanging broker after a deadline
# (celery/celery#6046), and stuck publishes are counted so that requests stop waiting on them at all.
_MAX_PUBLISHES_IN_FLIGHT = 8
_publisher_lock = threading.Lock()
_publishes_in_flight = 0


@cache
def _publisher() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="notifier-wake")


def _reset_after_fork() -> None:
    # A forked child (Celery prefork, gunicorn) inherits the executor but not its thread.
    global _publishes_in_flight
    _publisher.cache_clear()
    _publishes_in_flight = 0


os.register_at_fork(after_in_child=_reset_after_fork)

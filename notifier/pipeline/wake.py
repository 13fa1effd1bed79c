"""Wake-ups: a Celery message tells a worker "this queue has due rows", and at most one is pending per queue.

The rows are the queue (docs/architecture.md, "Throughput rules"): a burst of 10,000 accepted notifications
costs a handful of messages, not 10,000. A Redis flag (SET NX with a TTL) marks a pending wake-up; the task clears
it before it claims rows, so a row committed after the claim always finds the flag clear and wakes again.
A lost wake-up (broker down, Redis flushed) costs at most two sweep intervals: the beat sweeper wakes every
queue that has due rows, and for rows due longer than a sweep interval it publishes even when the flag is
set (`force`), since the flag's message may be the one that was lost.
"""
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from functools import cache

import redis

from notifier.redis_client import breaker_for, redis_budget_charge, redis_client, redis_time_left

log = logging.getLogger(__name__)

FLAG_PREFIX = "notifier:wake:"
# Longer than a wake-up normally waits in its queue; after that a second one may be published (harmless).
FLAG_TTL_SECONDS = 30


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


def publish_once(queue: str, task, args: tuple, flag: str) -> bool:
    """Publish `task(*args)` to `queue` unless the message under `flag` is pending (a campaign's advance,
    one chunk of it): the same deadlines and breaker as a wake-up. Never raises."""
    return _wake(queue, task, args, flag=flag)


def clear_flag(queue: str) -> None:
    """Called by a task before it claims rows: from now on, new rows need a new wake-up."""
    try:
        redis_client().delete(FLAG_PREFIX + queue)
    except redis.RedisError as error:
        log.warning("wake: could not clear flag of %s: %s", queue, error)


@cache
def _broker_url(app) -> str:
    """The broker's URL, read once per process: Celery works it out again on every read of the setting
    (the environment, then its configuration), 3 % of a POST's CPU when every request read it."""
    return app.conf.broker_url


def _wake(queue: str, task, args: tuple, force: bool = False, flag: str | None = None) -> bool:
    """Publish a wake-up for `queue` unless one is pending, or even then with `force`. Never raises, and
    returns within what is left of the request's Redis budget (notifier/redis_client.py) even when the broker accepts connections but
    never answers (then the publish goes on in the background, the broker's breaker opens, and the sweeper
    covers the gap). Returns whether it published or found a wake-up pending.

    The flag is set here, in the caller's thread (a Redis call, bounded by the budget like any other): most
    wake-ups find one pending and end there, without a hand-off to the publisher thread."""
    wait = redis_time_left()
    if wait <= 0:
        log.warning("wake: this request has spent its Redis budget; leaving %s to the sweeper", queue)
        return False
    broker = breaker_for(_broker_url(task.app))
    if not broker.allow():
        log.warning("wake: the broker did not answer lately; leaving %s to the sweeper", queue)
        return False
    flag_name = flag or queue
    try:
        if not redis_client().set(FLAG_PREFIX + flag_name, "1", nx=not force, ex=FLAG_TTL_SECONDS):
            return True  # one is pending already
    except redis.RedisError as error:
        log.warning("wake: Redis unreachable (%s); publishing to %s without the flag", error, queue)
    with _publisher_lock:
        global _publishes_in_flight
        stuck = _publishes_in_flight >= _MAX_PUBLISHES_IN_FLIGHT
        if not stuck:
            _publishes_in_flight += 1
    if stuck:
        log.warning("wake: earlier publishes are stuck; leaving %s to the sweeper", queue)
        clear_flag(flag_name)  # not published: the next caller must publish it
        return False
    future = _publisher().submit(_publish, queue, task, args, broker, flag_name)
    wait = redis_time_left()
    if wait <= 0:  # the flag took the rest: the publish goes on in the background, unwaited for
        log.warning("wake: this request has spent its Redis budget; not waiting for the publish to %s", queue)
        return False
    started = time.monotonic()
    try:
        return future.result(timeout=wait)
    except FuturesTimeout:
        broker.failed(f"no answer to a publish within {wait:.1f} s")
        log.warning("wake: publishing to %s took over %.1f s; the sweeper will retry", queue, wait)
        return False
    finally:
        redis_budget_charge(time.monotonic() - started)


def _publish(queue: str, task, args: tuple, broker, flag_name: str) -> bool:
    global _publishes_in_flight
    try:
        try:
            task.apply_async(args=args, queue=queue, routing_key=queue, retry=False)
            broker.succeeded()
            return True
        except Exception as error:  # kombu raises several types; none may reach the producer's request
            broker.failed(error)
            log.warning("wake: could not publish to %s: %s; the sweeper will retry", queue, error)
            clear_flag(flag_name)  # not published: the next caller must publish it
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
    # A forked child (Celery prefork) inherits the executor but not its thread.
    global _publishes_in_flight
    _publisher.cache_clear()
    _publishes_in_flight = 0


os.register_at_fork(after_in_child=_reset_after_fork)

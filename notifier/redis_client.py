"""The Redis clients notifier shares: `redis_client()` for commands (wake-up flags, rate-limit windows, the
producer quota, inbox events) and `stream_redis()` for the inbox stream's long-lived subscriptions.

Redis is on the request path but is never what a request waits for (docs/architecture.md, "Reliability
rules"). Every caller treats a redis.RedisError as "Redis is away" and has a fallback: the quota admits, a
wake-up is left to the sweeper, rate limits admit and say so. So the command client fails early rather than
late, with two guards:

- A budget per request. Within `redis_budget()` (every HTTP request: notifier/middleware.py) all Redis
  calls together, and the wait on the broker's publish, take at most NOTIFIER_REDIS_TIMEOUT_SECONDS: each
  read waits only for what is left, and once it is spent a call fails at once (redis.TimeoutError). Outside
  one (Celery tasks), each call waits at most NOTIFIER_REDIS_TIMEOUT_SECONDS.
- A breaker per server, local to the process. After a timeout or a refused or broken connection, calls to
  that server fail at once (RedisUnavailable, a redis.ConnectionError) for NOTIFIER_REDIS_BREAKER_SECONDS;
  then one call is let through to try, and an answer closes the breaker. A hanging Redis thus costs the
  requests already waiting on it their budget, and the ones after them nothing. The broker's publishes
  use the same breakers (pipeline/wake.py): a Redis broker on the same server shares one.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cache
from urllib.parse import urlsplit

import redis
from django.conf import settings
from redis.backoff import NoBackoff
from redis.retry import Retry

log = logging.getLogger(__name__)


class RedisUnavailable(redis.ConnectionError):
    """The server's breaker is open: it did not answer lately, and was not asked."""


class RedisBudgetSpent(redis.TimeoutError):
    """This request has spent its Redis budget: Redis was not asked."""


# --- the budget --------------------------------------------------------------------------------------------

@dataclass
class _Budget:
    left: float


_budget: ContextVar[_Budget | None] = ContextVar("notifier_redis_budget", default=None)


@contextmanager
def redis_budget(seconds: float | None = None):
    """All Redis work in this block (and waits charged with `redis_budget_charge`) takes at most
    `seconds`, NOTIFIER_REDIS_TIMEOUT_SECONDS by default."""
    token = _budget.set(_Budget(settings.NOTIFIER_REDIS_TIMEOUT_SECONDS if seconds is None else seconds))
    try:
        yield
    finally:
        _budget.reset(token)


def redis_time_left() -> float:
    """How long the next Redis call, or a wait on the broker, may take: what is left of the budget, or
    NOTIFIER_REDIS_TIMEOUT_SECONDS outside one."""
    budget = _budget.get()
    return settings.NOTIFIER_REDIS_TIMEOUT_SECONDS if budget is None else budget.left


def redis_budget_charge(seconds: float) -> None:
    budget = _budget.get()
    if budget is not None:
        budget.left = max(0.0, budget.left - seconds)


# --- the breakers ------------------------------------------------------------------------------------------

class Breaker:
    """Open after a failure: `allow()` is False for NOTIFIER_REDIS_BREAKER_SECONDS, then True for one
    caller, whose outcome closes it (`succeeded`) or opens it again (`failed`)."""

    def __init__(self, server: str):
        self.server = server
        self._lock = threading.Lock()
        self._open_until = 0.0  # 0: closed

    def allow(self) -> bool:
        if not self._open_until:
            return True
        with self._lock:
            now = time.monotonic()
            if not self._open_until:
                return True
            if now < self._open_until:
                return False
            # The window is over: this caller tries, the others keep failing fast until it knows.
            self._open_until = now + settings.NOTIFIER_REDIS_BREAKER_SECONDS
            return True

    def failed(self, reason: object) -> None:
        with self._lock:
            was_closed = not self._open_until
            self._open_until = time.monotonic() + settings.NOTIFIER_REDIS_BREAKER_SECONDS
        if was_closed:
            log.warning("breaker: %s did not answer (%s); not asking it for %s s", self.server, reason,
                        settings.NOTIFIER_REDIS_BREAKER_SECONDS)

    def succeeded(self) -> None:
        if self._open_until:
            with self._lock:
                self._open_until = 0.0
            log.warning("breaker: %s answers again", self.server)


_breakers: dict[str, Breaker] = {}
_breakers_lock = threading.Lock()
_DEFAULT_PORTS = {"redis": 6379, "rediss": 6379, "amqp": 5672, "pyamqp": 5672, "amqps": 5671}


def breaker_for(url: str) -> Breaker:
    """The breaker of the server `url` points at: every database of one Redis server shares one, and so
    does a Redis broker on it."""
    parts = urlsplit(url)
    if parts.hostname:
        server = f"{parts.scheme}://{parts.hostname}:{parts.port or _DEFAULT_PORTS.get(parts.scheme)}"
    else:
        server = f"{parts.scheme}://{parts.path}"
    with _breakers_lock:
        return _breakers.setdefault(server, Breaker(server))


# --- the command client ------------------------------------------------------------------------------------

class _Guarded:
    """Reads wait only for what is left of the budget; their outcome tells the server's breaker."""

    breaker: Breaker

    def connect(self):
        self.socket_connect_timeout = _time_left_or_raise()
        super().connect()

    def _connect(self):
        # The socket's connect, charged to the budget (a blackholed server costs its whole connect timeout);
        # the handshake's reads after it charge themselves.
        started = time.monotonic()
        try:
            return super()._connect()
        except OSError as error:  # refused, unreachable, or socket.timeout
            self.breaker.failed(error)
            raise
        finally:
            redis_budget_charge(time.monotonic() - started)

    def read_response(self, *args, **kwargs):
        kwargs["timeout"] = _time_left_or_raise()
        started = time.monotonic()
        try:
            response = super().read_response(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as error:
            self.breaker.failed(error)
            raise
        except redis.ResponseError:
            self.breaker.succeeded()  # an error reply is an answer
            raise
        finally:
            redis_budget_charge(time.monotonic() - started)
        self.breaker.succeeded()
        return response


class _GuardedConnection(_Guarded, redis.Connection):
    pass


class _GuardedSSLConnection(_Guarded, redis.SSLConnection):
    pass


class _GuardedUnixConnection(_Guarded, redis.UnixDomainSocketConnection):
    pass


_CONNECTION_CLASSES = {"redis": _GuardedConnection, "rediss": _GuardedSSLConnection, "unix": _GuardedUnixConnection}


class _GuardedPool(redis.ConnectionPool):
    """Hands out no connection while the server's breaker is open; a failed connect opens it."""

    def __init__(self, *args, breaker: Breaker, **kwargs):
        self.breaker = breaker
        super().__init__(*args, **kwargs)

    def get_connection(self, *args, **kwargs):
        if not self.breaker.allow():
            raise RedisUnavailable(f"{self.breaker.server} did not answer lately; not asked")
        try:
            return super().get_connection(*args, **kwargs)
        except RedisBudgetSpent:
            raise  # Redis was not asked
        except (redis.ConnectionError, redis.TimeoutError) as error:
            self.breaker.failed(error)
            raise

    def make_connection(self):
        connection = super().make_connection()
        connection.breaker = self.breaker
        return connection


def _time_left_or_raise() -> float:
    left = redis_time_left()
    if left <= 0:
        raise RedisBudgetSpent("this request has spent its Redis budget")
    return left


def redis_client() -> redis.Redis:
    return redis_client_for(settings.REDIS_URL)


@cache
def redis_client_for(url: str) -> redis.Redis:
    pool = _GuardedPool.from_url(
        url,
        connection_class=_CONNECTION_CLASSES[urlsplit(url).scheme],
        socket_timeout=settings.NOTIFIER_REDIS_TIMEOUT_SECONDS,
        # No retries: the caller has a fallback, and a retry would spend the budget twice.
        retry=Retry(NoBackoff(), 0),
        breaker=breaker_for(url),
    )
    return redis.Redis(connection_pool=pool)


def redis_clients_reset() -> None:
    """Forget every client and breaker: a forked child starts afresh (a thread it does not have may have
    held the parent's locks), and so does each test."""
    global _breakers_lock
    _breakers_lock = threading.Lock()
    _breakers.clear()
    redis_client_for.cache_clear()
    stream_redis.cache_clear()


@cache
def stream_redis() -> redis.Redis:
    """A client for long-lived subscriptions: no read timeout (a stream waits on purpose), a bounded
    connect, and health checks so a dead connection is noticed."""
    return redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_keepalive=True,
                                health_check_interval=30)


os.register_at_fork(after_in_child=redis_clients_reset)

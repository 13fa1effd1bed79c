"""The per-producer API quota: requests per window, counted atomically in Redis.

A fixed window per producer (one key, INCRBY and PEXPIRE in one Lua call, so any number of concurrent
requests over the limit admit exactly the limit). Over it, DRF answers 429 with `Retry-After` (the seconds
left in the window) in the standard error shape. The count is Producer.quota_requests, or
NOTIFIER_PRODUCER_QUOTA_REQUESTS; the window is NOTIFIER_PRODUCER_QUOTA_WINDOW_SECONDS. If Redis cannot
be reached the request is let through: the quota protects the service, it must not take it down.

A process takes a producer's requests from Redis a lease at a time: up to LEASE_MAX of them, never more
than 1/LEASE_SHARE of the quota, spent by its threads until the window ends. A request then costs a Redis
round trip once a lease rather than every time (it was one of a POST's three round trips), and the limit
still holds: a lease is counted in Redis when it is taken, so all processes together admit at most the
quota. What a process leased and did not spend by the window's end is lost to the producer, at most a
lease per process per window; a small quota (under LEASE_SHARE × 2) is counted one request at a time.
"""
import logging
import math
import threading
import time
from dataclasses import dataclass

import redis
from django.conf import settings
from rest_framework.throttling import BaseThrottle

from notifier.models import Producer
from notifier.redis_client import redis_budget_charge, redis_client, redis_time_left

log = logging.getLogger(__name__)

KEY_PREFIX = "notifier:quota:"

LEASE_MAX = 20
LEASE_SHARE = 200

# KEYS[1]: the producer's counter. ARGV: limit, window ms, requests wanted. Returns {requests granted (the
# wanted ones that fit under the limit, 0 when none does), ms left in the window}.
_TAKE = """
local wanted = tonumber(ARGV[3])
local count = redis.call('INCRBY', KEYS[1], wanted)
if count == wanted then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]); ttl = tonumber(ARGV[2]) end
local granted = math.min(wanted, tonumber(ARGV[1]) - (count - wanted))
if granted < 0 then granted = 0 end
return {granted, ttl}
"""


@dataclass
class _Lease:
    remaining: int
    ends: float  # time.monotonic() when its window ends


_leases: dict[int, _Lease] = {}
_refills: dict[int, threading.Lock] = {}  # one lease taken at a time per producer, so threads do not all take one
_leases_lock = threading.Lock()


def lease_size(limit: int) -> int:
    return max(1, min(LEASE_MAX, limit // LEASE_SHARE))


def producer_quota_consume(producer_id: int, limit: int, window_seconds: int) -> tuple[bool, float]:
    """Count one request; returns (admitted, seconds until the window resets)."""
    spent = _lease_spend(producer_id)
    if spent:
        return spent
    with _leases_lock:
        refill = _refills.setdefault(producer_id, threading.Lock())
    # The other threads wait for the one taking a lease, within the request's Redis budget (a Redis that
    # hangs costs each request its own deadline, not a queue of them); past it, a thread asks itself.
    waited = time.monotonic()
    holding = refill.acquire(timeout=max(0.001, redis_time_left()))
    redis_budget_charge(time.monotonic() - waited)
    try:
        spent = _lease_spend(producer_id)
        if spent:
            return spent
        now = time.monotonic()
        granted, ttl_ms = redis_client().register_script(_TAKE)(
            keys=[f"{KEY_PREFIX}{producer_id}"], args=[limit, window_seconds * 1000, lease_size(limit)])
        if not granted:
            return False, ttl_ms / 1000
        with _leases_lock:
            _leases[producer_id] = _Lease(granted - 1, now + ttl_ms / 1000)
        return True, ttl_ms / 1000
    finally:
        if holding:
            refill.release()


def _lease_spend(producer_id: int) -> tuple[bool, float] | None:
    """(True, seconds left in the window) if this process's lease had a request left, else None."""
    now = time.monotonic()
    with _leases_lock:
        lease = _leases.get(producer_id)
        if lease and lease.remaining > 0 and now < lease.ends:
            lease.remaining -= 1
            return True, lease.ends - now
    return None


def quota_leases_clear() -> None:
    """Forget this process's leases (tests: each starts with a clean Redis)."""
    with _leases_lock:
        _leases.clear()


class ProducerQuotaThrottle(BaseThrottle):
    """DRF throttle for producer endpoints; recipient-token callers are not producers and pass."""

    def allow_request(self, request, view):
        producer = request.user
        if not isinstance(producer, Producer):
            return True
        limit = producer.quota_requests or settings.NOTIFIER_PRODUCER_QUOTA_REQUESTS
        try:
            admitted, self.retry_after = producer_quota_consume(
                producer.pk, limit, settings.NOTIFIER_PRODUCER_QUOTA_WINDOW_SECONDS
            )
        except redis.RedisError as error:
            log.warning("quota: Redis unreachable (%s); letting producer %s through", error, producer.pk)
            return True
        return admitted

    def wait(self):
        return math.ceil(self.retry_after)

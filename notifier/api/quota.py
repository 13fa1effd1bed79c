"""The per-producer API quota: requests per window, counted atomically in Redis.

A fixed window per producer (one key, INCR and PEXPIRE in one Lua call, so any number of concurrent
requests over the limit admit exactly the limit). Over it, DRF answers 429 with `Retry-After` (the seconds
left in the window) in the standard error shape. The count is Producer.quota_requests, or
NOTIFIER_PRODUCER_QUOTA_REQUESTS; the window is NOTIFIER_PRODUCER_QUOTA_WINDOW_SECONDS. If Redis cannot
be reached the request is let through: the quota protects the service, it must not take it down.
"""
import logging
import math

import redis
from django.conf import settings
from rest_framework.throttling import BaseThrottle

from notifier.models import Producer
from notifier.redis_client import redis_client

log = logging.getLogger(__name__)

KEY_PREFIX = "notifier:quota:"

# KEYS[1]: the producer's counter. ARGV: limit, window ms. Returns {admitted (0/1), ms left in the window}.
_CONSUME = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]); ttl = tonumber(ARGV[2]) end
if count > tonumber(ARGV[1]) then return {0, ttl} end
return {1, ttl}
"""


def producer_quota_consume(producer_id: int, limit: int, window_seconds: int) -> tuple[bool, float]:
    """Count one request; returns (admitted, seconds until the window resets)."""
    admitted, ttl_ms = redis_client().register_script(_CONSUME)(
        keys=[f"{KEY_PREFIX}{producer_id}"], args=[limit, window_seconds * 1000]
    )
    return bool(admitted), ttl_ms / 1000


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

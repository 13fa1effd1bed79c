"""The most a provider may be sent per second, shared by every worker: a token bucket in Redis per provider
(settings.NOTIFIER_PROVIDER_MAX_PER_SECOND: TWILIO_MAX_PER_SECOND, SENDGRID_MAX_PER_SECOND, ...).

The bucket holds at most one second's worth of tokens and refills continuously. `send_tokens_take(provider,
n)` takes up to n at once (one round trip for a group of sends) and says how long until the next one, so a
delivery over the rate waits for its turn instead of earning the provider's 429. A provider without a limit
costs no Redis call at all. If Redis cannot be reached the bucket fails open: everything is granted, and the
log says so.
"""
from __future__ import annotations

import logging

import redis
from django.conf import settings

from notifier.redis_client import redis_client

log = logging.getLogger(__name__)

KEY_PREFIX = "notifier:send-rate:"

# ARGV: rate (tokens per second), wanted. The bucket's capacity is one second's worth (at least one token).
# Returns {granted, seconds until the next token as a string}.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate, wanted = tonumber(ARGV[1]), tonumber(ARGV[2])
local capacity = math.max(rate, 1)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens, at = tonumber(state[1] or tostring(capacity)), tonumber(state[2] or tostring(now))
tokens = math.min(capacity, tokens + math.max(0, now - at) * rate)
local granted = math.min(wanted, math.floor(tokens))
tokens = tokens - granted
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity / rate * 1000) + 1000)
local wait = 0
if tokens < 1 then wait = (1 - tokens) / rate end
return {granted, tostring(wait)}
"""


class _Script:
    take = None


def send_rate_limit(provider: str) -> float | None:
    """Sends per second allowed to `provider`, None for no limit."""
    return settings.NOTIFIER_PROVIDER_MAX_PER_SECOND.get(provider)


def send_tokens_take(provider: str, wanted: int) -> tuple[int, float]:
    """Take up to `wanted` send tokens of `provider`: (how many were granted, seconds until the next token
    is due). Unlimited providers, and any provider while Redis is unreachable, get all they want."""
    return bucket_take(KEY_PREFIX + provider, send_rate_limit(provider), wanted, f"to {provider}")


def bucket_take(key: str, rate: float | None, wanted: int, what: str) -> tuple[int, float]:
    """Take up to `wanted` tokens of the bucket at `key` refilling at `rate` per second (None: no limit):
    (granted, seconds until the next token). Fails open when Redis is unreachable: `what` names the
    sends in the log line ("to sendgrid", "of campaign …"). Also the campaigns' throttle
    (notifier/campaigns/throttle.py)."""
    if not rate or wanted <= 0:
        return wanted, 0.0
    if _Script.take is None:
        _Script.take = redis_client().register_script(_TAKE)
    try:
        granted, wait = _Script.take(keys=[key], args=[rate, wanted], client=redis_client())
    except redis.RedisError as error:
        log.warning("send rate: Redis unreachable, sending %s without its limit: %s", what, error)
        return wanted, 0.0
    return int(granted), float(wait)

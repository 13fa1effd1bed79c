"""A circuit breaker per provider, its state in Redis so that every worker process on every host agrees.

    closed     sends go through; transient failures (5xx, timeouts, refused connections) are counted, and
               a success resets the count. NOTIFIER_CIRCUIT_FAILURE_THRESHOLD consecutive ones open it.
    open       nothing is sent to the provider until `open_until` (NOTIFIER_CIRCUIT_COOLDOWN_SECONDS after it
               opened): the channel sends to the next provider of the chain, or the delivery waits in the
               database until then, without spending an attempt (notifier/channels/base.py).
    half-open  the cool-down is over: exactly one send, the probe, is let through (claimed inside the
               script, so two workers never both probe); the others keep waiting. The probe's success
               closes the circuit; its transient failure opens it again for twice the cool-down, up to
               NOTIFIER_CIRCUIT_MAX_COOLDOWN_SECONDS. A probe whose outcome never comes (its worker died)
               gives way to another after PROBE_LEASE_SECONDS.

Only transient failures count: a permanent error (a bad address, a gone token) is an answer, so it counts
as a success. Each transition is one Lua script, run atomically by Redis, with Redis's own clock (TIME), so
workers on hosts whose clocks differ still agree on when a circuit may close.

If Redis cannot be reached the circuit fails open (every send goes through, as without a breaker) and says
so in the log: an outage of Redis must not stop notifications.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone

import redis
from django.conf import settings

from notifier.redis_client import redis_client

log = logging.getLogger(__name__)

KEY_PREFIX = "notifier:circuit:"
# How long the one probe of a half-open circuit has to report back before another worker may probe: more
# than any provider's timeout (NOTIFIER_PROVIDER_TIMEOUT_SECONDS, 10 s by default) plus a batch's overhead.
PROBE_LEASE_SECONDS = 60

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"

# Fields of the hash: failures (consecutive transient failures), open_until (Unix seconds; absent while
# closed), cooldown (the current cool-down, doubled by each failed probe), probe_until (the probe's lease).
_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
"""

# ARGV: the probe's lease in seconds. Returns {verdict, until, failures}: verdict "send" (closed, with its
# count of consecutive failures), "probe" (this caller is the probe), or "wait" with `until`, the Unix time
# at which to ask again.
_ADMIT = _NOW + """
local open_until = tonumber(redis.call('HGET', KEYS[1], 'open_until') or '0')
if open_until == 0 then return {'send', '0', tonumber(redis.call('HGET', KEYS[1], 'failures') or '0')} end
if now < open_until then return {'wait', tostring(open_until)} end
local probe_until = tonumber(redis.call('HGET', KEYS[1], 'probe_until') or '0')
if now < probe_until then return {'wait', tostring(probe_until)} end
redis.call('HSET', KEYS[1], 'probe_until', tostring(now + tonumber(ARGV[1])))
return {'probe', '0'}
"""

# ARGV: succeeded (1 when a send after the last transient failure succeeded), trailing (transient failures
# after the last success, in the order outcomes came), probe (1 when these are the probe's outcomes),
# threshold, cooldown, max cooldown. Returns {state, open_until}.
_RECORD = _NOW + """
local succeeded, trailing, probe = ARGV[1] == '1', tonumber(ARGV[2]), ARGV[3] == '1'
local threshold, cooldown, max_cooldown = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local open_until = tonumber(redis.call('HGET', KEYS[1], 'open_until') or '0')
if probe then
  if trailing == 0 then
    redis.call('DEL', KEYS[1])
    return {'closed', '0'}
  end
  local last = tonumber(redis.call('HGET', KEYS[1], 'cooldown') or tostring(cooldown))
  local next_cooldown = math.min(last * 2, max_cooldown)
  redis.call('HSET', KEYS[1], 'open_until', tostring(now + next_cooldown), 'cooldown', tostring(next_cooldown),
             'probe_until', '0', 'failures', '0')
  return {'open', tostring(now + next_cooldown)}
end
if open_until > 0 then return {'open', tostring(open_until)} end  -- opened meanwhile by another worker
local failures = tonumber(redis.call('HGET', KEYS[1], 'failures') or '0')
if succeeded then failures = trailing else failures = failures + trailing end
if failures >= threshold then
  redis.call('HSET', KEYS[1], 'open_until', tostring(now + cooldown), 'cooldown', tostring(cooldown),
             'probe_until', '0', 'failures', '0')
  return {'open', tostring(now + cooldown)}
end
if failures == 0 then
  redis.call('DEL', KEYS[1])
else
  redis.call('HSET', KEYS[1], 'failures', tostring(failures))
end
return {'closed', '0'}
"""


@dataclass(frozen=True)
class Admission:
    """What the circuit lets a caller do now: "send" (`failures` in a row so far), "probe" (send exactly
    one message, then report it with probe=True) or "wait" until `until` (Unix seconds)."""

    verdict: str
    until: float = 0.0
    failures: int = 0


SEND = Admission("send")


class _Scripts:
    admit = None
    record = None


def _scripts() -> _Scripts:
    # register_script keeps the SHA and falls back to EVAL once when Redis does not know it yet.
    if _Scripts.admit is None:
        client = redis_client()
        _Scripts.admit, _Scripts.record = client.register_script(_ADMIT), client.register_script(_RECORD)
    return _Scripts


def circuit_admit(provider: str) -> Admission:
    """May this process send to `provider` now? One Redis round trip."""
    try:
        verdict, until, *failures = _scripts().admit(keys=[KEY_PREFIX + provider], args=[PROBE_LEASE_SECONDS],
                                                     client=redis_client())
    except redis.RedisError as error:
        log.warning("circuit: Redis unreachable, sending to %s without its breaker: %s", provider, error)
        return SEND
    verdict = verdict.decode() if isinstance(verdict, bytes) else verdict
    return Admission(verdict, float(until), int(failures[0]) if failures else 0)


def circuit_record(provider: str, *, succeeded: bool, trailing_failures: int, probe: bool = False) -> str:
    """Report a group of sends to `provider`: whether one succeeded after the group's last transient
    failure, and how many transient failures came after its last success. Returns the circuit's state
    after them (CLOSED or OPEN). One Redis round trip."""
    try:
        state, open_until = _scripts().record(
            keys=[KEY_PREFIX + provider],
            args=[int(succeeded), trailing_failures, int(probe), settings.NOTIFIER_CIRCUIT_FAILURE_THRESHOLD,
                  settings.NOTIFIER_CIRCUIT_COOLDOWN_SECONDS, settings.NOTIFIER_CIRCUIT_MAX_COOLDOWN_SECONDS],
            client=redis_client(),
        )
    except redis.RedisError as error:
        log.warning("circuit: Redis unreachable, outcomes of %s not counted: %s", provider, error)
        return CLOSED
    state = state.decode() if isinstance(state, bytes) else state
    if probe:
        log.warning("circuit: %s probe %s; circuit %s", provider, "failed" if trailing_failures else "succeeded",
                    state if state == CLOSED else f"open until {iso_time(float(open_until))}")
    elif state == OPEN and trailing_failures:
        log.warning("circuit: %s failed %s times in a row; circuit open until %s", provider,
                    settings.NOTIFIER_CIRCUIT_FAILURE_THRESHOLD, iso_time(float(open_until)))
    return state


def circuit_close(provider: str) -> None:
    """Close a provider's circuit at once (the admin's "close circuit")."""
    redis_client().delete(KEY_PREFIX + provider)
    log.warning("circuit: %s closed by hand", provider)


def circuit_states(providers: list[str]) -> dict[str, str]:
    """Each provider's circuit as text: "closed", "open until 2026-12-02T03:04:05Z", "half-open" (the cool-down is
    over; the next send probes), or "unknown: …" when Redis does not answer. One Redis round trip."""
    try:
        pipe = redis_client().pipeline(transaction=False)
        pipe.time()
        for provider in providers:
            pipe.hget(KEY_PREFIX + provider, "open_until")
        seconds, *opens = pipe.execute()
    except redis.RedisError as error:
        return {provider: f"unknown: Redis unreachable ({error})" for provider in providers}
    now = seconds[0] + seconds[1] / 1e6
    states = {}
    for provider, open_until in zip(providers, opens):
        open_until = float(open_until or 0)
        if not open_until:
            states[provider] = CLOSED
        elif now < open_until:
            states[provider] = f"{OPEN} until {iso_time(open_until)}"
        else:
            states[provider] = HALF_OPEN
    return states


def iso_time(unix_seconds: float) -> str:
    return datetime.fromtimestamp(unix_seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

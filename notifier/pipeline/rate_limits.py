"""Per-user rate limits: sliding windows in Redis, checked for a whole routing batch in one round trip.

Each window is a sorted set of notification ids scored by the moment they count (ms). One Lua script
call decides one notification on one channel against every window that applies (user × channel, user ×
type key, user × category) atomically, all or nothing: a delivery stopped by one window consumes no
room in the others. The member is the notification id, so a notification counts once per window however
many devices it reaches, a second channel of the same notification does not count twice against a type
window, and routing the same notification again (a rolled-back batch) does not count it twice.

Over a limit, the type's `rate_limit_action` decides: `suppress` drops the delivery (status suppressed);
`hold` reserves the first moment the window has room again (it is counted at that moment) and the
delivery waits, status held, until the beat task releases it (pipeline/holds.py). Deliveries held for
quiet hours are counted when they are routed. Critical types are exempt. Limits are a table in settings
(NOTIFIER_RATE_LIMITS).

Windows are keyed by the user's external `user_id`, never the row id: Redis may outlive a database (a
restore, a fresh install on an old Redis), and a new row with an old id must not inherit another user's
windows. The scope comes first and the user id last (`notifier:rl:channel:push:<user_id>`), so no user id,
whatever it contains, can spell another user's key.

Redis unreachable: rate_limits_check raises redis.RedisError, and the route step admits the batch and says
so in each decision (pipeline/route.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings

from notifier.redis_client import redis_client

KEY_PREFIX = "notifier:rl:"

# KEYS: the windows. ARGV: now_ms, member, hold (0/1), then limit and window_ms for each key.
# Returns {index of the window that limited (0: none), ms at which the delivery counts and may go}.
_CHECK = """
local now = tonumber(ARGV[1])
local member = ARGV[2]
local hold = ARGV[3] == '1'
local at = now
local limited = 0
for i, key in ipairs(KEYS) do
  local limit = tonumber(ARGV[2 + 2 * i])
  local window = tonumber(ARGV[3 + 2 * i])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  local counted = redis.call('ZSCORE', key, member)
  if counted then
    -- counted already (another channel of this notification, or a re-route): keep its moment
    if tonumber(counted) > at then at = tonumber(counted); limited = i end
  else
    local count = redis.call('ZCARD', key)
    if count >= limit then
      if not hold then return {i, 0} end
      -- room comes back when the oldest entry that keeps the window full leaves it
      local entry = redis.call('ZRANGE', key, count - limit, count - limit, 'WITHSCORES')
      local free_at = tonumber(entry[2]) + window
      if free_at > at then at = free_at; limited = i end
    end
  end
end
for i, key in ipairs(KEYS) do
  local window = tonumber(ARGV[3 + 2 * i])
  if not redis.call('ZSCORE', key, member) then redis.call('ZADD', key, at, member) end
  local keep = at - now + window
  if redis.call('PTTL', key) < keep then redis.call('PEXPIRE', key, keep) end
end
return {limited, at}
"""


# The same decision as _CHECK, read-only: nothing is removed, added or re-timed, so a campaign's dry run
# (notifier/campaigns/dry_run.py) can ask what routing would decide without using up anyone's window.
# Entries at or before now - window are the ones _CHECK would remove first: they are not counted.
_PEEK = """
local now = tonumber(ARGV[1])
local member = ARGV[2]
local hold = ARGV[3] == '1'
local at = now
local limited = 0
for i, key in ipairs(KEYS) do
  local limit = tonumber(ARGV[2 + 2 * i])
  local window = tonumber(ARGV[3 + 2 * i])
  local after = '(' .. (now - window)
  local score = redis.call('ZSCORE', key, member)
  local counted = score and tonumber(score)
  if counted and counted > now - window then
    if counted > at then at = counted; limited = i end
  else
    local count = redis.call('ZCOUNT', key, after, '+inf')
    if count >= limit then
      if not hold then return {i, 0} end
      local entry = redis.call('ZRANGEBYSCORE', key, after, '+inf', 'WITHSCORES', 'LIMIT', count - limit, 1)
      local free_at = tonumber(entry[2]) + window
      if free_at > at then at = free_at; limited = i end
    end
  end
end
return {limited, at}
"""


@dataclass(frozen=True)
class LimitCheck:
    """One notification on one channel, to be counted against the user's windows."""

    user_id: str  # Recipient.user_id
    channel: str
    type_key: str
    category: str
    member: str  # the notification id
    hold: bool  # the type's rate_limit_action is "hold"


@dataclass(frozen=True)
class LimitVerdict:
    limited: bool = False
    reason: str = ""  # "rate limited: 30/hour push"
    hold_until: datetime | None = None  # set when the delivery is held rather than suppressed


def _script(source: str = _CHECK):
    return redis_client().register_script(source)  # cheap: it only hashes the source


def windows_for(check: LimitCheck) -> list[tuple[str, str, int, int]]:
    """(redis key, label, limit, window seconds) of every window that applies to this check."""
    table = settings.NOTIFIER_RATE_LIMITS
    windows = []
    if check.channel in table.get("channel", {}):
        limit, seconds = table["channel"][check.channel]
        windows.append((f"{KEY_PREFIX}channel:{check.channel}:{check.user_id}", check.channel, limit, seconds))
    for scope in dict.fromkeys((check.type_key, check.category)):
        if scope in table.get("type", {}):
            limit, seconds = table["type"][scope]
            windows.append((f"{KEY_PREFIX}type:{scope}:{check.user_id}", scope, limit, seconds))
    return windows


def rate_limits_check(checks: list[LimitCheck], now: datetime) -> list[LimitVerdict]:
    """Count each check against its windows, in order, and say which are over a limit. One Redis round
    trip for the whole list (a pipeline of script calls, each atomic)."""
    return _verdicts(checks, now, _CHECK)


def rate_limits_peek(checks: list[LimitCheck], now: datetime) -> list[LimitVerdict]:
    """What rate_limits_check would answer for each check on its own, counting nothing: Redis is only
    read. (Unlike rate_limits_check, two checks of one user in the same list do not see each other.)"""
    return _verdicts(checks, now, _PEEK)


def _verdicts(checks: list[LimitCheck], now: datetime, source: str) -> list[LimitVerdict]:
    if not settings.NOTIFIER_RATE_LIMITS_ENABLED:
        return [LimitVerdict() for _ in checks]
    now_ms = int(now.timestamp() * 1000)
    plans = [windows_for(check) for check in checks]
    script = _script(source)
    pipe = redis_client().pipeline(transaction=False)
    for check, windows in zip(checks, plans):
        if windows:
            args = [now_ms, check.member, 1 if check.hold else 0]
            for _, _, limit, seconds in windows:
                args += [limit, seconds * 1000]
            script(keys=[key for key, *_ in windows], args=args, client=pipe)
    answers = iter(pipe.execute() if any(plans) else [])
    verdicts = []
    for check, windows in zip(checks, plans):
        if not windows:
            verdicts.append(LimitVerdict())
            continue
        limited, at_ms = next(answers)
        if not limited:
            verdicts.append(LimitVerdict())
            continue
        _, label, limit, seconds = windows[limited - 1]
        reason = f"rate limited: {limit}/{_per(seconds)} {label}"
        hold_until = datetime.fromtimestamp(at_ms / 1000, tz=UTC) if check.hold else None
        verdicts.append(LimitVerdict(limited=True, reason=reason, hold_until=hold_until))
    return verdicts


def _per(seconds: int) -> str:
    return {60: "minute", 3600: "hour", 86400: "day", 604800: "week"}.get(seconds, f"{seconds}s")

"""Per-user rate limits: sliding windows in Redis, checked for a whole routing batch in one round trip.

Each window is a sorted set of notification ids scored by the moment they count (ms). A Lua script
decides each notification on one channel against every window that applies (user × channel, user ×
type key, user × category) atomically, all or nothing, and takes a batch's checks a few hundred to a
call: a delivery stopped by one window consumes no room in the others. The member is the notification id, so a notification counts once per window however
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

# Checks per script call: a call runs alone in Redis, so one is kept to a few milliseconds; a routing batch
# or a campaign chunk sends all of its calls in one round trip (a pipeline).
CHECKS_PER_CALL = 500

# Decides a list of checks in order, each against all of its windows, all or nothing. KEYS: every check's
# windows, one check after the other. ARGV: now_ms, peek (0/1), then for each check: member, hold (0/1),
# its number of windows n, and n pairs of limit and window_ms. Returns, per check, the index among its
# windows of the one that limited it (0: none) and the ms at which it counts and may go (0: refused).
# peek: decide the same, read-only (a campaign's dry run: notifier/campaigns/dry_run.py), so nobody's
# window is used up; entries at or before now - window are not counted, as counting would remove them
# first, and the checks of one list do not see each other.
_DECIDE = """
local now = tonumber(ARGV[1])
local peek = ARGV[2] == '1'
local verdicts = {}
local k, a = 0, 3
while a <= #ARGV do
  local member, hold, n = ARGV[a], ARGV[a + 1] == '1', tonumber(ARGV[a + 2])
  a = a + 3
  local at, limited, refused = now, 0, false
  for i = 1, n do
    local key, limit, window = KEYS[k + i], tonumber(ARGV[a + 2 * i - 2]), tonumber(ARGV[a + 2 * i - 1])
    local oldest = now - window
    if not peek then redis.call('ZREMRANGEBYSCORE', key, '-inf', oldest) end
    local score = redis.call('ZSCORE', key, member)
    local counted = score and tonumber(score)
    if counted and counted > oldest then
      -- counted already (another channel of this notification, or a re-route): keep its moment
      if counted > at then at = counted; limited = i end
    else
      local count = redis.call('ZCOUNT', key, '(' .. oldest, '+inf')
      if count >= limit then
        if not hold then limited = i; refused = true; break end
        -- room comes back when the oldest entry that keeps the window full leaves it
        local entry = redis.call('ZRANGEBYSCORE', key, '(' .. oldest, '+inf', 'WITHSCORES', 'LIMIT', count - limit, 1)
        local free_at = tonumber(entry[2]) + window
        if free_at > at then at = free_at; limited = i end
      end
    end
  end
  if refused then at = 0 end
  if not peek and not refused then
    for i = 1, n do
      local key, window = KEYS[k + i], tonumber(ARGV[a + 2 * i - 1])
      if not redis.call('ZSCORE', key, member) then redis.call('ZADD', key, at, member) end
      local keep = at - now + window
      if redis.call('PTTL', key) < keep then redis.call('PEXPIRE', key, keep) end
    end
  end
  verdicts[#verdicts + 1] = limited
  verdicts[#verdicts + 1] = at
  k, a = k + n, a + 2 * n
end
return verdicts
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


def _script():
    return redis_client().register_script(_DECIDE)  # cheap: it only hashes the source


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
    trip for the whole list (a script call per CHECKS_PER_CALL checks, each atomic)."""
    return _verdicts(checks, now, peek=False)


def rate_limits_peek(checks: list[LimitCheck], now: datetime) -> list[LimitVerdict]:
    """What rate_limits_check would answer for each check on its own, counting nothing: Redis is only
    read. (Unlike rate_limits_check, two checks of one user in the same list do not see each other.)"""
    return _verdicts(checks, now, peek=True)


def _verdicts(checks: list[LimitCheck], now: datetime, *, peek: bool) -> list[LimitVerdict]:
    if not settings.NOTIFIER_RATE_LIMITS_ENABLED:
        return [LimitVerdict() for _ in checks]
    now_ms = int(now.timestamp() * 1000)
    limited = [(index, check, windows) for index, check in enumerate(checks) if (windows := windows_for(check))]
    script, pipe = _script(), redis_client().pipeline(transaction=False)
    for start in range(0, len(limited), CHECKS_PER_CALL):
        keys, args = [], [now_ms, 1 if peek else 0]
        for _, check, windows in limited[start:start + CHECKS_PER_CALL]:
            keys += [key for key, *_ in windows]
            args += [check.member, 1 if check.hold else 0, len(windows)]
            for _, _, limit, seconds in windows:
                args += [limit, seconds * 1000]
        script(keys=keys, args=args, client=pipe)
    answers = iter([value for call in (pipe.execute() if limited else []) for value in call])
    verdicts = [LimitVerdict()] * len(checks)
    for index, check, windows in limited:
        window, at_ms = next(answers), next(answers)
        if window:
            _, label, limit, seconds = windows[window - 1]
            hold_until = datetime.fromtimestamp(at_ms / 1000, tz=UTC) if check.hold else None
            verdicts[index] = LimitVerdict(limited=True, reason=f"rate limited: {limit}/{_per(seconds)} {label}",
                                           hold_until=hold_until)
    return verdicts


def _per(seconds: int) -> str:
    return {60: "minute", 3600: "hour", 86400: "day", 604800: "week"}.get(seconds, f"{seconds}s")

"""The inbox's read cache in Redis: each user's first page (the JSON GET …/notifications answers with the
default page size, no cursor, not archived) and unread badge, so that the read an app makes on every
screen costs one Redis round trip instead of two queries.

The rows stay the truth, and a read never waits for the cache: Redis unreachable (or its breaker open,
notifier/redis_client.py), the read is answered from PostgreSQL as without a cache.

No stale read after a write. One hash per user, `notifier:inbox:<user id>` (keyed by the external user id:
Redis may outlive a database, docs/architecture.md), holds a generation `gen` and the cached `page` and
`badge`:

- every commit that changes what a user's inbox shows (an item written, read or unread, archived or
  unarchived, all marked read, purged, the user deleted) gives the user a new generation after commit and
  drops the cached values (`inbox_changed`);
- a reader that misses takes the generation first, then queries, then stores what it computed only if
  the generation is still the one it took (a Lua script: check and set in one step). A read that raced a
  write and saw the rows before it can therefore never put them back after the write's invalidation.

Generations come from one counter (`notifier:inbox:generations`), so a value never repeats, even after a
user's hash expired. Entries live NOTIFIER_INBOX_CACHE_SECONDS (0: no cache).

The badge is cached with the page, under the same generation, and recomputed on a miss; it is not kept
by increments: an increment per write would have to match exactly what the count query counts (an item
inserted twice is ignored by the insert, a purge deletes unread items, the cap), and one lost increment
would stay wrong until reconciled. Recounting on a miss is exact by construction and costs one indexed,
capped count per write.

A write whose invalidation cannot reach Redis: the process remembers it and, before it uses the cache
again, moves the global epoch (`notifier:inbox:epoch`, part of every entry's validity), which drops every
user's entry at once; meanwhile its own reads go to PostgreSQL. Other processes may serve such an entry
until that happens or until it expires (NOTIFIER_INBOX_CACHE_SECONDS): the only stale window there is,
and only while Redis is failing. After restoring the database under a Redis that kept its keys, move the
epoch by hand (`redis-cli INCR notifier:inbox:epoch`, README).
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

import redis
from django.conf import settings
from django.db import transaction

from notifier.redis_client import redis_client

log = logging.getLogger(__name__)

KEY_PREFIX = "notifier:inbox:"
EPOCH_KEY = "notifier:inbox:epoch"
GENERATIONS_KEY = "notifier:inbox:generations"
PAGE = "page"
BADGE = "badge"
INVALIDATE_BATCH = 1000  # users per script call: a campaign chunk's thousand recipients in one round trip


def user_key(user_id: str) -> str:
    return KEY_PREFIX + user_id


def renamed_key(user_id: str) -> str:
    return KEY_PREFIX + "renamed:" + user_id


# KEYS: the user's hash, the epoch, the generation counter. ARGV: the field, the recipient id, the TTL.
# Returns {generation, epoch, value or nil}; a user with no generation yet is given one.
_READ = """
local fields = redis.call('HMGET', KEYS[1], 'gen', 'rid', 'epoch', ARGV[1])
local epoch = redis.call('GET', KEYS[2]) or '0'
local gen = fields[1]
if not gen then
  gen = tostring(redis.call('INCR', KEYS[3]))
  redis.call('HSET', KEYS[1], 'gen', gen)
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  return {gen, epoch, false}
end
if fields[4] and fields[2] == ARGV[2] and fields[3] == epoch then
  return {gen, epoch, fields[4]}
end
return {gen, epoch, false}
"""

# KEYS: the user's hash, the epoch, the user id's renamed marker. ARGV: the generation and epoch the values
# were computed under, the recipient id, the TTL, then field, value pairs. Stores only if neither has moved
# since and the recipient was not renamed away from this user id; 1 if stored.
_STORE = """
if redis.call('HGET', KEYS[1], 'gen') ~= ARGV[1] or (redis.call('GET', KEYS[2]) or '0') ~= ARGV[2]
   or redis.call('GET', KEYS[3]) == ARGV[3] then
  return 0
end
local held = redis.call('HMGET', KEYS[1], 'rid', 'epoch')
if held[1] ~= ARGV[3] or held[2] ~= ARGV[2] then
  redis.call('HDEL', KEYS[1], 'page', 'badge')
end
redis.call('HSET', KEYS[1], 'rid', ARGV[3], 'epoch', ARGV[2], unpack(ARGV, 5))
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
"""

# KEYS: the generation counter, then the users' hashes. ARGV: the TTL. Each user gets a new generation
# and loses its cached values.
_INVALIDATE = """
for i = 2, #KEYS do
  redis.call('HSET', KEYS[i], 'gen', redis.call('INCR', KEYS[1]))
  redis.call('HDEL', KEYS[i], 'page', 'badge')
  redis.call('EXPIRE', KEYS[i], ARGV[1])
end
return #KEYS - 1
"""

_scripts: dict[str, object] = {}


def _script(source: str):
    """The registered script (EVALSHA, loaded on first use) on the current client."""
    client = redis_client()
    cached = _scripts.get(source)
    if cached is None or cached.registered_client is not client:
        cached = _scripts[source] = client.register_script(source)
    return cached


# --- the epoch a failed invalidation moves -----------------------------------------------------------------

_epoch_lock = threading.Lock()
_epoch_owed = 0  # invalidations this process could not make since it last moved the epoch


def _owe_epoch() -> None:
    global _epoch_owed
    with _epoch_lock:
        _epoch_owed += 1


def _pay_epoch() -> bool:
    """Move the epoch if this process owes it; False while it cannot (the cache is not to be used then)."""
    global _epoch_owed
    if not _epoch_owed:
        return True
    with _epoch_lock:
        owed = _epoch_owed
    try:
        redis_client().incr(EPOCH_KEY)
    except redis.RedisError:
        return False
    with _epoch_lock:
        _epoch_owed -= owed  # failures since the INCR began are owed still
    log.warning("inbox cache: moved the epoch after %s invalidations Redis did not take", owed)
    return True


def inbox_cache_reset() -> None:
    """Drop every user's cached inbox (the epoch moves). Raises redis.RedisError."""
    redis_client().incr(EPOCH_KEY)


# --- reads -------------------------------------------------------------------------------------------------

def inbox_cached(user_id: str, recipient_id: int, field: str, compute: Callable[[], dict[str, bytes]]) -> bytes:
    """The user's cached `field` (PAGE or BADGE), else `compute()`'s, stored for the next read.
    `compute` queries the rows and returns {field: bytes} for `field` and any others worth storing with
    it (the page's read computes the badge too)."""
    ttl = settings.NOTIFIER_INBOX_CACHE_SECONDS
    if ttl <= 0 or not _pay_epoch():
        return compute()[field]
    key = user_key(user_id)
    try:
        generation, epoch, value = _script(_READ)(keys=[key, EPOCH_KEY, GENERATIONS_KEY],
                                                  args=[field, recipient_id, ttl])
    except redis.RedisError as error:
        log.debug("inbox cache: read from the database, Redis did not answer: %s", error)
        return compute()[field]
    if value is not None:
        return value
    values = compute()  # after taking the generation: see the module's docstring
    pairs = [item for name_value in values.items() for item in name_value]
    try:
        _script(_STORE)(keys=[key, EPOCH_KEY, renamed_key(user_id)], args=[generation, epoch, recipient_id, ttl, *pairs])
    except redis.RedisError as error:
        log.debug("inbox cache: could not store: %s", error)
    return values[field]


# --- writes ------------------------------------------------------------------------------------------------

def inbox_changed(user_ids: Iterable[str]) -> None:
    """The inboxes of these users changed (committed): their cached reads are dropped. Never raises; a
    failure is paid for by moving the epoch as soon as Redis answers again."""
    ttl = settings.NOTIFIER_INBOX_CACHE_SECONDS
    user_ids = list(dict.fromkeys(user_ids))
    if ttl <= 0 or not user_ids:
        return
    try:
        for start in range(0, len(user_ids), INVALIDATE_BATCH):
            batch = user_ids[start:start + INVALIDATE_BATCH]
            _script(_INVALIDATE)(keys=[GENERATIONS_KEY, *map(user_key, batch)], args=[ttl])
    except redis.RedisError as error:
        _owe_epoch()
        log.warning("inbox cache: could not drop the cached inbox of %s users (%s); the epoch moves once Redis "
                    "answers", len(user_ids), error)
        return
    _pay_epoch()


def inbox_recipient_renamed(old_user_id: str, recipient_id: int) -> None:
    """The recipient's user id is no longer `old_user_id` (an operator renamed it in the admin). Recipient
    tokens issued for the old id still read this recipient's rows, under the old id's entry, which the
    writes to this recipient no longer drop (they drop the new id's): so the old id is not cached for this
    recipient for as long as those tokens live. Raises redis.RedisError."""
    pipe = redis_client().pipeline(transaction=True)
    pipe.set(renamed_key(old_user_id), recipient_id, ex=settings.NOTIFIER_RECIPIENT_TOKEN_TTL_SECONDS)
    pipe.delete(user_key(old_user_id))
    pipe.execute()


def inbox_changed_on_commit(user_ids: Iterable[str]) -> None:
    """inbox_changed once the current transaction commits (at once outside one): a reader that misses
    after the invalidation reads the committed rows."""
    user_ids = list(user_ids)
    transaction.on_commit(lambda: inbox_changed(user_ids), robust=True)

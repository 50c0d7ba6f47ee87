"""Lists in Redis that a caller can append to safely and read a page at a time.

Each list ``<key>`` is three Redis keys, written together by one Lua script (one
round trip, atomic: no other command runs in between)::

    list:<key>        the values, oldest first (a Redis list)
    list-ids:<key>    each value's id, scored by its position (a sorted set)
    list-group:<g>    the lists of group g, scored by their last append (ms)

- **Positions.** Every item gets the next position (0, 1, 2, ...) when it is
  appended, and keeps it: trimming the oldest items away does not renumber the
  rest. A page read starts at a position (the cursor), so a reader never skips
  or repeats an item however the list changed between its reads.
- **Ids.** An append that names an id already in the list stores nothing and
  answers with the value stored under it: a retried append (its first answer
  lost after Redis ran it) is stored once. An id is remembered while its item is
  in the list.
- **Idle expiry.** With a TTL, each append renews it on all three keys.
- **Length.** Past ``max_length`` the oldest items are dropped; the count of
  items dropped so far (the first kept item's position) is in every answer.
- **Groups.** A list may belong to a group with at most ``max_lists`` lists: the
  append that puts a group over it deletes the group's least recently appended
  lists (never the one appended to). Lists of one group should share a TTL.

The append script is refused as a whole when Redis is full (``maxmemory`` with
nothing to evict): it writes nothing, and the caller gets an OutOfMemoryError.
The read script is flagged ``no-writes``, so reads still work then.

Evicted lists' keys are derived inside the script from the group's members, so
on a Redis Cluster a group and its lists would need one hash slot: this
project runs one Redis.
"""

from contextlib import suppress
from dataclasses import dataclass
from typing import Literal, cast

from opentelemetry.instrumentation.utils import suppress_instrumentation
from redis.asyncio import Redis
from redis.exceptions import RedisError

LIST_PREFIX = "list:"
IDS_PREFIX = "list-ids:"
GROUP_PREFIX = "list-group:"

# KEYS: the list, its ids[, its group]. ARGV: value, id ('' none), ttl seconds
# ('' none), max length, must exist ('1'/'0'), the list's own key (its name in
# the group), the group's max lists, the two key prefixes.
_APPEND = """#!lua
local list, ids, group = KEYS[1], KEYS[2], KEYS[3]
local value, item_id, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local max_length, must_exist = tonumber(ARGV[4]), ARGV[5] == '1'
local member, max_lists = ARGV[6], tonumber(ARGV[7])
local list_prefix, ids_prefix = ARGV[8], ARGV[9]

local length = redis.call('LLEN', list)
if length == 0 then
  if must_exist then return {'missing', 0, 0, 0, 0, ''} end
  redis.call('DEL', ids) -- a list that expired or was deleted starts afresh
end
-- The newest item's position; a list written before ids existed counts from 0.
local newest = length - 1
local last = redis.call('ZRANGE', ids, -1, -1, 'WITHSCORES')
if last[2] then newest = tonumber(last[2]) end

if item_id ~= '' then
  local seen = redis.call('ZSCORE', ids, item_id)
  if seen then
    local first = newest - length + 1
    local stored = redis.call('LINDEX', list, tonumber(seen) - first) or ''
    return {'replayed', length, tonumber(seen), first, 0, stored}
  end
end

local position = newest + 1
redis.call('RPUSH', list, value)
if item_id == '' then item_id = '#' .. position end -- never a caller's id
redis.call('ZADD', ids, position, item_id)
length = length + 1
if length > max_length then
  redis.call('LTRIM', list, length - max_length, -1)
  length = max_length
end
local first = position - length + 1
redis.call('ZREMRANGEBYSCORE', ids, '-inf', '(' .. first)

local function keep(key)
  if ttl then redis.call('EXPIRE', key, ttl) else redis.call('PERSIST', key) end
end
keep(list)
keep(ids)

local evicted = 0
if group then
  local now = redis.call('TIME')
  redis.call('ZADD', group, now[1] * 1000 + math.floor(now[2] / 1000), member)
  keep(group)
  local excess = redis.call('ZCARD', group) - max_lists
  if excess > 0 then
    for _, other in ipairs(redis.call('ZRANGE', group, 0, excess)) do
      if excess == 0 then break end
      if other ~= member then
        redis.call('ZREM', group, other)
        -- 0: it had expired already, and only its place in the group was left
        if redis.call('DEL', list_prefix .. other, ids_prefix .. other) > 0 then
          evicted = evicted + 1
        end
        excess = excess - 1
      end
    end
  end
end
return {'appended', length, position, first, evicted, ''}
"""

# KEYS: the list, its ids. ARGV: the position to start at ('' the oldest), count.
_PAGE = """#!lua flags=no-writes
local list, ids = KEYS[1], KEYS[2]
local cursor, count = tonumber(ARGV[1]), tonumber(ARGV[2])
local length = redis.call('LLEN', list)
if length == 0 then return {0, 0, 0, {}} end
local newest = length - 1
local last = redis.call('ZRANGE', ids, -1, -1, 'WITHSCORES')
if last[2] then newest = tonumber(last[2]) end
local first = newest - length + 1
local start = 0
if cursor and cursor > first then start = cursor - first end
return {length, first, start + first, redis.call('LRANGE', list, start, start + count - 1)}
"""


@dataclass(frozen=True)
class ListGroup:
    key: str
    max_lists: int


@dataclass(frozen=True, kw_only=True)
class AppendOptions:
    item_id: str | None = None  # stored once per id
    ttl_seconds: int | None = None  # idle expiry; None: kept
    max_length: int
    must_exist: bool = False  # never create the list by appending to it
    group: ListGroup | None = None


@dataclass(frozen=True)
class Appended:
    """What an append did. ``replayed``: the id was in the list already, nothing
    was stored, and ``stored`` is the value appended under it first."""

    outcome: Literal["appended", "replayed", "missing"]
    length: int
    position: int  # the item's (the replayed one's, for a replay)
    trimmed: int  # items dropped from the oldest end so far
    evicted: int  # lists of the group this append deleted
    stored: str | None = None


@dataclass(frozen=True)
class Page:
    length: int  # 0: there is no such list
    trimmed: int
    start: int  # the position of values[0]
    values: list[str]

    @property
    def next_position(self) -> int | None:
        """Where the next page starts; None when this one reaches the newest item."""
        after = self.start + len(self.values)
        return after if after < self.trimmed + self.length else None


class Lists:
    """The two scripts, registered on one client (each call is one EVALSHA)."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._append = redis.register_script(_APPEND)
        self._page = redis.register_script(_PAGE)

    async def load(self) -> None:
        """Load both scripts now (untraced), where it can: otherwise the first call
        after a start finds none (NOSCRIPT), and its trace shows a failed EVALSHA
        before redis-py loads it and retries. A Redis that is down is left to that."""
        with suppress(RedisError), suppress_instrumentation():
            for script in (_APPEND, _PAGE):
                await self._redis.script_load(script)

    async def append(self, key: str, value: str, options: AppendOptions) -> Appended:
        keys = [LIST_PREFIX + key, IDS_PREFIX + key]
        group = options.group
        if group is not None:
            keys.append(GROUP_PREFIX + group.key)
        args = [
            value,
            options.item_id or "",
            "" if options.ttl_seconds is None else str(options.ttl_seconds),
            str(options.max_length),
            "1" if options.must_exist else "0",
            key,
            str(group.max_lists if group else 0),
            LIST_PREFIX,
            IDS_PREFIX,
        ]
        reply = cast(list[object], await self._append(keys=keys, args=args))
        outcome, length, position, trimmed, evicted, stored = reply
        return Appended(
            outcome=cast(Literal["appended", "replayed", "missing"], outcome),
            length=int(cast(int, length)),
            position=int(cast(int, position)),
            trimmed=int(cast(int, trimmed)),
            evicted=int(cast(int, evicted)),
            stored=str(stored) if outcome == "replayed" else None,
        )

    async def page(self, key: str, *, start: int | None, count: int) -> Page:
        keys = [LIST_PREFIX + key, IDS_PREFIX + key]
        args = ["" if start is None else str(start), str(count)]
        reply = cast(list[object], await self._page(keys=keys, args=args))
        length, trimmed, first_shown, values = reply
        return Page(
            length=int(cast(int, length)),
            trimmed=int(cast(int, trimmed)),
            start=int(cast(int, first_shown)),
            values=cast(list[str], values),
        )

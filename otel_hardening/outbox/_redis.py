"""The shared store: Redis, for several processes or hosts (the circuit-state store already is).

Layout under ``otel_hardening:outbox:<name>``: a hash per entry, a list of ids per upstream (its
queue, in order), a dead-letter list, a set of upstreams with pending entries, and counters of
entries and bytes kept in the same scripts that change them (so the bounds hold across processes).

Why lists and a per-upstream lease rather than stream consumer groups: replay is in order per
upstream, and a consumer group hands consecutive entries to different consumers, which breaks the
order. Here a consumer first takes the upstream's lease (``SET NX PX``), then works the head of the
queue; every ack renews the lease. A consumer that dies holds it until it expires (the visibility
timeout), after which another process takes the queue over: the entry it had in flight is sent
again with the same ``Idempotency-Key``. Every change is one Lua script: atomic, and a process killed
between two calls leaves a consistent state. Durability is the server's (``appendfsync``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from otel_hardening._redaction import redact_url
from otel_hardening.outbox._errors import StoreError, StoreFull
from otel_hardening.outbox._model import CONSUMER, Entry, Stats, Store

T = TypeVar("T")
_FIELDS = ("upstream", "record", "body", "created", "attempts", "next_at", "last_error", "dead_reason")

_LUA_COMMON = """
local ns = ARGV[1]
local function unlink(id, up)
  local e = ns .. ':e:' .. id
  local q = ns .. ':q:' .. up
  local removed = redis.call('LREM', q, 1, id)
  if redis.call('LLEN', q) == 0 then redis.call('SREM', ns .. ':ups', up) end
  return removed
end
"""
_PUT = """
local id, up, size = ARGV[2], ARGV[3], tonumber(ARGV[4])
local count = tonumber(redis.call('GET', ns .. ':count') or '0')
local bytes = tonumber(redis.call('GET', ns .. ':bytes') or '0')
if count + 1 > tonumber(ARGV[5]) then return {'count', count} end
if bytes + size > tonumber(ARGV[6]) then return {'bytes', bytes} end
redis.call('HSET', ns .. ':e:' .. id, 'upstream', up, 'record', ARGV[7], 'body', ARGV[8], 'created', ARGV[9],
           'attempts', '0', 'next_at', ARGV[10], 'last_error', '', 'dead_reason', '', 'size', size)
redis.call('RPUSH', ns .. ':q:' .. up, id)
redis.call('SADD', ns .. ':ups', up)
redis.call('INCR', ns .. ':count')
redis.call('INCRBY', ns .. ':bytes', size)
return {'ok', 0}
"""
_CLAIM = """
local up, limit, ms, me, now, ignore = ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5], tonumber(ARGV[6]), ARGV[7]
local lease = ns .. ':lease:' .. up
local holder = redis.call('GET', lease)
if holder and holder ~= me then return {} end
local ids = redis.call('LRANGE', ns .. ':q:' .. up, 0, limit - 1)
if #ids == 0 then return {} end
if ignore ~= '1' then
  local next_at = tonumber(redis.call('HGET', ns .. ':e:' .. ids[1], 'next_at') or '0')
  if next_at > now then return {} end
end
redis.call('SET', lease, me, 'PX', ms)
local out = {}
for i, id in ipairs(ids) do
  out[i] = {id, redis.call('HMGET', ns .. ':e:' .. id, FIELDS)}
end
return out
""".replace("FIELDS", ", ".join(f"'{f}'" for f in _FIELDS))
_ACK = """
local id, me, ms = ARGV[2], ARGV[3], ARGV[4]
local e = ns .. ':e:' .. id
local up = redis.call('HGET', e, 'upstream')
if not up then return 0 end
local size = tonumber(redis.call('HGET', e, 'size'))
local dead = redis.call('HGET', e, 'dead_reason') ~= ''
if dead then
  redis.call('LREM', ns .. ':dead', 1, id)
  redis.call('DECR', ns .. ':dead_count')
  redis.call('DECRBY', ns .. ':dead_bytes', size)
else
  unlink(id, up)
end
redis.call('DEL', e)
redis.call('DECR', ns .. ':count')
redis.call('DECRBY', ns .. ':bytes', size)
local lease = ns .. ':lease:' .. up
if me ~= '' and redis.call('GET', lease) == me then redis.call('PEXPIRE', lease, ms) end
return 1
"""
_RELEASE = """
local e = ns .. ':e:' .. ARGV[2]
if redis.call('EXISTS', e) == 0 or redis.call('HGET', e, 'dead_reason') ~= '' then return 0 end
redis.call('HSET', e, 'attempts', ARGV[3], 'next_at', ARGV[4], 'last_error', ARGV[5])
return 1
"""
_BURY = """
local id = ARGV[2]
local e = ns .. ':e:' .. id
local up = redis.call('HGET', e, 'upstream')
if not up or redis.call('HGET', e, 'dead_reason') ~= '' then return 0 end
unlink(id, up)
redis.call('HSET', e, 'dead_reason', ARGV[3], 'attempts', ARGV[4], 'last_error', ARGV[5])
redis.call('RPUSH', ns .. ':dead', id)
redis.call('INCR', ns .. ':dead_count')
redis.call('INCRBY', ns .. ':dead_bytes', tonumber(redis.call('HGET', e, 'size')))
return 1
"""
_REVIVE = """
local id = ARGV[2]
local e = ns .. ':e:' .. id
local up = redis.call('HGET', e, 'upstream')
if not up or redis.call('HGET', e, 'dead_reason') == '' then return 0 end
redis.call('LREM', ns .. ':dead', 1, id)
redis.call('DECR', ns .. ':dead_count')
redis.call('DECRBY', ns .. ':dead_bytes', tonumber(redis.call('HGET', e, 'size')))
redis.call('HSET', e, 'dead_reason', '', 'attempts', '0', 'next_at', '0')
redis.call('RPUSH', ns .. ':q:' .. up, id)
redis.call('SADD', ns .. ':ups', up)
return 1
"""
_DUE = """
local e = ns .. ':e:' .. ARGV[2]
if redis.call('EXISTS', e) == 0 or redis.call('HGET', e, 'dead_reason') ~= '' then return 0 end
redis.call('HSET', e, 'next_at', '0')
return 1
"""
_STATS = """
local oldest = false
for _, up in ipairs(redis.call('SMEMBERS', ns .. ':ups')) do
  local head = redis.call('LINDEX', ns .. ':q:' .. up, 0)
  if head then
    local created = tonumber(redis.call('HGET', ns .. ':e:' .. head, 'created'))
    if created and (not oldest or created < oldest) then oldest = created end
  end
end
return {redis.call('GET', ns .. ':count') or '0', redis.call('GET', ns .. ':bytes') or '0',
        redis.call('GET', ns .. ':dead_count') or '0', redis.call('GET', ns .. ':dead_bytes') or '0',
        oldest and tostring(oldest) or ''}
"""
_FINISH = """
local lease = ns .. ':lease:' .. ARGV[2]
if redis.call('GET', lease) == ARGV[3] then redis.call('DEL', lease) end
return 1
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisStore(Store):
    def __init__(self, url: str, name: str = "default", max_entries: int = 10_000,
                 max_bytes: int = 64 * 1024 * 1024, *, socket_timeout: float = 2.0) -> None:
        try:
            import redis
        except ImportError:
            raise StoreError("a redis:// outbox store needs the 'redis' package "
                             "(pip install 'otel-hardening[redis]')") from None
        self._redis_mod = redis
        self.location = redact_url(url)
        self.ns = f"otel_hardening:outbox:{name}"
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._url = url
        self._timeout = socket_timeout
        self._client: Any = None
        self._lease_ms = 60_000
        """The visibility timeout of the last claim: every ack renews the lease by as much."""
        self._scripts: dict[str, Any] = {}
        self._connect()
        self._run(lambda r: r.ping())  # an unreachable server is a clear error at start

    def _connect(self) -> None:
        try:
            self._client = self._redis_mod.Redis.from_url(
                self._url, socket_timeout=self._timeout, socket_connect_timeout=self._timeout)
        except ValueError as exc:
            raise StoreError(f"outbox store {self.location}: {exc}") from None
        self._scripts = {name: self._client.register_script(_LUA_COMMON + body) for name, body in (
            ("put", _PUT), ("claim", _CLAIM), ("ack", _ACK), ("release", _RELEASE), ("bury", _BURY),
            ("revive", _REVIVE), ("due", _DUE), ("stats", _STATS), ("finish", _FINISH))}

    def _run(self, work: Callable[[Any], T]) -> T:
        try:
            return work(self._client)
        except self._redis_mod.RedisError as exc:
            raise StoreError(f"outbox store {self.location}: {type(exc).__name__}: "
                             f"{_text(exc) or 'no detail'}") from None

    def _script(self, name: str, *args: object) -> Any:
        return self._run(lambda r: self._scripts[name](args=[self.ns, *args]))

    def after_fork(self) -> None:
        self._connect()  # redis-py's pool would reconnect on pid change too; be explicit

    def close(self) -> None:
        self._run(lambda r: r.close())

    def put(self, entry: Entry) -> None:
        size = entry.size
        kind, have = self._script("put", entry.id, entry.upstream, size, self.max_entries, self.max_bytes,
                                  entry.record(), entry.body, repr(entry.created), repr(entry.next_at))
        kind = _text(kind)
        if kind == "count":
            raise StoreFull(f"outbox store {self.location} is full: {have} entries stored "
                            f"(max_entries={self.max_entries})")
        if kind == "bytes":
            raise StoreFull(f"outbox store {self.location} is full: {have} + {size} bytes would exceed "
                            f"max_bytes={self.max_bytes}")

    def _entry(self, id: Any, values: Sequence[Any]) -> Entry | None:
        if values[0] is None:
            return None
        up, record, body, created, attempts, next_at, last_error, dead = values
        return Entry.from_record(_text(id), _text(up), _text(record), bytes(body), float(created),
                                 int(attempts), float(next_at), _text(last_error), _text(dead))

    def claim(self, upstream: str, limit: int, visibility: float, *, consumer: str = CONSUMER,
              ignore_schedule: bool = False) -> list[Entry]:
        self._lease_ms = max(1, int(visibility * 1000))
        rows = self._script("claim", upstream, limit, self._lease_ms, consumer, repr(time.time()),
                            "1" if ignore_schedule else "0")
        now = time.time()
        out: list[Entry] = []
        for id, values in rows:
            entry = self._entry(id, values)
            if entry is None:
                continue
            if not ignore_schedule and out and entry.next_at > now:
                break
            out.append(entry)
        return out

    def ack(self, entry: Entry, consumer: str = CONSUMER) -> None:
        self._script("ack", entry.id, consumer, self._lease_ms)

    def release(self, entry: Entry, consumer: str = CONSUMER) -> None:
        self._script("release", entry.id, entry.attempts, repr(entry.next_at), entry.last_error)

    def bury(self, entry: Entry, reason: str, consumer: str | None = CONSUMER) -> None:
        self._script("bury", entry.id, reason or "dead", entry.attempts, entry.last_error)

    def finish(self, upstream: str, consumer: str = CONSUMER) -> None:
        self._script("finish", upstream, consumer)

    def upstreams(self) -> list[str]:
        return sorted(_text(u) for u in self._run(lambda r: r.smembers(self.ns + ":ups")))

    def stats(self) -> Stats:
        count, size, dead, dead_size, oldest = (_text(v) for v in self._script("stats"))
        return Stats(int(count) - int(dead), int(size) - int(dead_size), float(oldest) if oldest else None,
                     int(dead), int(dead_size))

    def get(self, id: str) -> Entry | None:
        values = self._run(lambda r: r.hmget(f"{self.ns}:e:{id}", *_FIELDS))
        return self._entry(id, values)

    def _range(self, key: str, limit: int) -> list[Any]:
        return list(self._run(lambda r: r.lrange(key, 0, limit - 1)))

    def _ids(self, dead: bool, limit: int) -> list[str]:
        if dead:
            return [_text(i) for i in self._range(self.ns + ":dead", limit)]
        ids: list[str] = []
        for up in self.upstreams():
            ids += [_text(i) for i in self._range(f"{self.ns}:q:{up}", limit)]
        return sorted(ids)[:limit]  # ids are time-ordered

    def entries(self, *, dead: bool, limit: int = 100) -> list[Entry]:
        found = (self.get(i) for i in self._ids(dead, limit))
        return [e for e in found if e is not None]

    def retry_dead(self, ids: Sequence[str] | None = None) -> int:
        chosen = list(ids) if ids is not None else self._ids(True, 1 << 30)
        return sum(int(self._script("revive", i)) for i in chosen)

    def reschedule(self, ids: Sequence[str] | None = None) -> int:
        chosen = list(ids) if ids is not None else self._ids(False, 1 << 30)
        return sum(int(self._script("due", i)) for i in chosen)

    def purge(self, ids: Sequence[str] | None = None, *, dead: bool = True) -> int:
        if ids is None:
            ids = self._ids(True, 1 << 30) + ([] if dead else self._ids(False, 1 << 30))
        return sum(int(self._script("ack", i, "", 0)) for i in ids)

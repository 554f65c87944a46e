"""Circuit state shared across processes through pybreaker's Redis storage, with a local fallback.

pybreaker's ``CircuitRedisStorage`` catches every ``RedisError`` and logs a full traceback on every
access, which during a Redis outage means one traceback per request. Here its ``logger`` is replaced
by a signal: the first error logs once, the breaker switches to process-local state, and Redis is
tried again after ``_RETRY_REDIS_AFTER`` seconds. No exception ever reaches the application.

**Half-open trials, fleet-wide.** pybreaker shares the state, not the trial slots: each process
would send its own ``CIRCUIT_HALF_OPEN_MAX_CALLS`` trials at a recovering upstream. Here a slot is a
Redis key taken with ``SET NX PX`` (one script, one round trip): ``<namespace>:trial:<period>:<i>``
for ``i`` below the limit. ``period`` counts the openings of the circuit (incremented by whichever
process opens it), so a slot belongs to the half-open period that follows one opening, and a trial
released late (its task cancelled after the circuit reopened) cannot free a newer period's slot. A
slot is a lease: its key expires after ``reset_timeout`` (the circuit's own cadence of one trial per
reset_timeout), so a trial holder that crashed delays the next trial by at most one reset_timeout
instead of wedging the circuit; released normally, it is deleted only by its holder (compare-and-
delete on a random token). While Redis is unreachable the trials are counted per process.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pybreaker

from otel_hardening._logging import forget, log_once
from otel_hardening.http import bypass

_RETRY_REDIS_AFTER = 5.0
_SOCKET_TIMEOUT = 0.25
_STATES = frozenset({pybreaker.STATE_CLOSED, pybreaker.STATE_OPEN, pybreaker.STATE_HALF_OPEN})


class _FailureSignal:
    """Stands in for pybreaker's storage logger: any error it would log marks Redis as down."""

    def __init__(self, owner: FallbackRedisStorage) -> None:
        self._owner = owner

    def exception(self, msg: str, *args: object, **kwargs: object) -> None:
        self._owner._mark_down(msg)

    error = warning = exception


# KEYS: the period counter, the slot key prefix. ARGV: slots, token, lease in ms.
_TAKE_SLOT = """
local period = redis.call('GET', KEYS[1]) or '0'
for i = 0, tonumber(ARGV[1]) - 1 do
  local key = KEYS[2] .. ':' .. period .. ':' .. i
  if redis.call('SET', key, ARGV[2], 'NX', 'PX', ARGV[3]) then
    return key
  end
end
return false
"""
_GIVE_SLOT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class SharedUnavailable(Exception):
    """Redis cannot count the trials right now: the caller counts them in this process."""


class Lease:
    """One fleet-wide trial slot: the Redis key and the token that proves this process holds it."""

    __slots__ = ("key", "token")

    def __init__(self, key: str, token: str) -> None:
        self.key, self.token = key, token


class FallbackRedisStorage(pybreaker.CircuitBreakerStorage):
    def __init__(self, url: str, namespace: str) -> None:
        super().__init__("redis")
        self._url = url
        self._namespace_name = namespace
        self._local = pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)
        self._redis: Any = None
        self._client: Any = None
        self._scripts: tuple[Any, Any] | None = None
        self._down_until = 0.0
        self._failed = False
        self._connect()

    def _connect(self) -> None:
        try:
            import redis

            client = redis.Redis.from_url(
                self._url, socket_timeout=_SOCKET_TIMEOUT, socket_connect_timeout=_SOCKET_TIMEOUT
            )
            storage = pybreaker.CircuitRedisStorage(
                pybreaker.STATE_CLOSED, client, namespace=self._namespace_name
            )
        except ImportError:
            log_once("redis:import", logging.ERROR,
                     "otel_hardening: OTEL_PYTHON_HARDENING_CIRCUIT_STORAGE is a redis URL but the 'redis' "
                     "package is not installed (pip install 'otel-hardening[redis]'); using local state")
            self._down_until = float("inf")
            return
        except Exception as exc:  # redis-py raises several families on connect
            self._mark_down(type(exc).__name__)
            return
        storage.logger = _FailureSignal(self)  # type: ignore[assignment]
        self._client = client
        self._scripts = (client.register_script(_TAKE_SLOT), client.register_script(_GIVE_SLOT))
        self._redis = storage
        forget("redis:down")

    def _mark_down(self, why: str) -> None:
        bypass.record(bypass.STORAGE_ERROR, f"circuit state storage (Redis) unreachable ({why}): local state")
        self._failed = True
        self._down_until = time.monotonic() + _RETRY_REDIS_AFTER
        log_once("redis:down", logging.WARNING,
                 "otel_hardening: circuit state storage (Redis) unreachable (%s); "
                 "using process-local circuit state and retrying Redis every %.0fs",
                 why, _RETRY_REDIS_AFTER)

    def _backend(self) -> Any:
        if self._redis is not None and time.monotonic() >= self._down_until:
            return self._redis
        if self._redis is None and time.monotonic() >= self._down_until:
            self._connect()
            if self._redis is not None:
                return self._redis
        return self._local

    def _read(self, attr: str) -> Any:
        backend = self._backend()
        self._failed = False
        try:
            value = getattr(backend, attr)
        except (ValueError, TypeError, OverflowError, OSError):
            # pybreaker parses the counters and opened_at itself: garbage raises from int()/gmtime()
            log_once(f"redis:garbage:{self._namespace_name}", logging.WARNING,
                     "otel_hardening: unreadable circuit %s in Redis (%s); using process-local circuit "
                     "state", attr, self._namespace_name)
            return getattr(self._local, attr)
        if self._failed:
            return getattr(self._local, attr)
        return value

    def _write(self, method: str, *args: Any) -> None:
        getattr(self._local, method)(*args)
        backend = self._backend()
        if backend is not self._local:
            getattr(backend, method)(*args)

    @property
    def state(self) -> str:
        value = self._read("state")
        if value in _STATES:
            return str(value)
        # Garbage in the shared key (another tool, a half-written value): pybreaker would raise
        # KeyError on every request. Treat it as unknown and use this process's own state.
        log_once(f"redis:garbage:{self._namespace_name}", logging.WARNING,
                 "otel_hardening: circuit state %r in Redis (%s) is not one of %s; using process-local "
                 "circuit state", value, self._namespace_name, sorted(_STATES))
        return str(self._local.state)

    @state.setter
    def state(self, state: str) -> None:
        self._local.state = state
        backend = self._backend()
        if backend is not self._local:
            backend.state = state

    @property
    def counter(self) -> int:
        return int(self._read("counter"))

    @property
    def success_counter(self) -> int:
        return int(self._read("success_counter"))

    @property
    def opened_at(self) -> datetime | None:
        value = self._read("opened_at")
        return value if isinstance(value, datetime) else None

    @opened_at.setter
    def opened_at(self, now: datetime) -> None:
        self._local.opened_at = now
        backend = self._backend()
        if backend is not self._local:
            backend.opened_at = now
            # pybreaker sets opened_at as it opens the circuit: a new half-open period is to come
            with contextlib.suppress(SharedUnavailable):
                self._shared(lambda client, take, give: client.incr(self._key("period")))

    # --- fleet-wide half-open trial slots (see the module docstring) ---------------------------
    def _key(self, suffix: str) -> str:
        return f"{self._namespace_name}:{suffix}"

    def _shared(self, operation: Callable[[Any, Any, Any], Any]) -> Any:
        """``operation(client, take_script, give_script)`` on Redis; any failure marks Redis down and
        raises SharedUnavailable."""
        scripts = self._scripts
        if self._backend() is self._local or scripts is None:
            raise SharedUnavailable
        try:
            return operation(self._client, *scripts)
        except Exception as exc:  # redis-py raises several families (connection, timeout, response)
            self._mark_down(type(exc).__name__)
            raise SharedUnavailable from None

    def take_trial(self, slots: int, lease: float) -> Lease | None:
        """A fleet-wide trial slot of the current half-open period for ``lease`` seconds, or None.

        Raises SharedUnavailable when Redis cannot be asked (the caller then counts in-process).
        """
        token = secrets.token_hex(8)
        key = self._shared(lambda client, take, give: take(
            keys=[self._key("period"), self._key("trial")], args=[slots, token, max(1, int(lease * 1000))]))
        if not key:
            return None
        return Lease(key.decode() if isinstance(key, bytes) else str(key), token)

    def give_trial(self, lease: Lease) -> None:
        """Free the slot if this process still holds it; when Redis is down the lease expires on its own."""
        with contextlib.suppress(SharedUnavailable):
            self._shared(lambda client, take, give: give(keys=[lease.key], args=[lease.token]))

    def increment_counter(self) -> None:
        self._write("increment_counter")

    def reset_counter(self) -> None:
        self._write("reset_counter")

    def increment_success_counter(self) -> None:
        self._write("increment_success_counter")

    def reset_success_counter(self) -> None:
        self._write("reset_success_counter")


def make_storage(url: str, name: str) -> pybreaker.CircuitBreakerStorage | None:
    """Storage for the breaker ``name``: None (pybreaker's in-memory default) or shared Redis state."""
    if url == "memory":
        return None
    return FallbackRedisStorage(url, namespace=f"otel_hardening:{name}")

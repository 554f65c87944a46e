"""What the layer puts under httpx's connection pool: the deadline on sockets, and the attempt's start.

**The retry deadline as a deadline**: every socket operation of an attempt ends by it.

httpx's timeouts are per operation: an upstream that trickles one header byte every 0.4 s never trips
a 5 s read timeout, and would hold a call with a 1.5 s deadline for as long as it likes. So while an
attempt of a retryable call runs, a context variable holds the call's absolute deadline, and the
connection pool's network backend cuts the timeout of each connect, read, write and TLS handshake to
what is left of it. When nothing is left the operation fails with httpcore's own timeout error, which
httpx turns into ``httpx.ConnectTimeout`` / ``ReadTimeout`` / ``WriteTimeout``: the caller sees the
same error a short timeout would have given.

The variable is set only while the attempt runs (pool wait, connect, send, response headers): the
body is read by the caller after the response is handed over, outside it, so every body read gets
the caller's own timeouts (``timeout=None`` stays unlimited: a quiet server-sent-events stream is not
cut by the deadline). The request's timeouts are never rewritten; the one wait that is not a socket
operation, for a free connection of the pool, gets what is left of the deadline through a copy of
httpcore's per-attempt request made only when the caller's pool timeout is longer. A call that cannot
be retried has no deadline: its timeouts are exactly the caller's. DNS resolution inside ``connect``
is not interruptible (the system resolver has no timeout to cut), which is the one documented gap.

**The attempt's start.** The attempt's CLIENT span (opentelemetry-instrumentation-httpx) is current
when the transport calls its pool, so the pool tells the attempt (``ATTEMPT``) it started, before any
I/O, and the engine annotates that span (resend count, redacted URL). Nothing is written into the
caller's request for this: the request the application built is the one it gets back, unchanged.

**Phases and connections.** The same places time the attempt for the slow-request record
(phases.py): its pool entry (whether the pool was full), each connect and TLS handshake, its first
write. A connection opened by a hardened attempt carries its open time on its stream and records
``http.client.connection.duration`` when httpcore closes it.

Only pools that have a ``_network_backend`` (httpx's ``HTTPTransport`` and its proxy pools) get the
wrappers, installed once per pool on the pool instance (``transport._pool`` stays the same object). A
transport that wraps httpx's own (opentelemetry's ``SyncOpenTelemetryTransport``, say) is followed
through its ``_transport`` / ``transport`` attribute. Other transports (mocks, custom ones) get the
deadline between attempts only.
"""

from __future__ import annotations

import copy
import sys
import time
from collections.abc import Callable, Iterable, Sized
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Protocol

import httpcore
import httpx

if TYPE_CHECKING:
    from otel_hardening.http.registry import Upstream
    from otel_hardening.http.telemetry import Telemetry


class Attempt(Protocol):
    deadline_at: float | None
    """Absolute ``time.monotonic()`` by which the attempt's socket operations must end, or None."""
    queued_at: float
    """When the attempt arrived at a full pool, until it has a connection; else 0.0 (phases.py)."""
    upstream: Upstream

    @property
    def telemetry(self) -> Telemetry: ...

    def attempt_started(self) -> None:
        """Called as the attempt enters the pool (inside its CLIENT span), before any I/O."""

    def queued(self, now: float) -> None: ...

    def got_connection(self, now: float) -> None: ...

    def connected(self, start: float, end: float) -> None: ...


ATTEMPT: ContextVar[Attempt | None] = ContextVar("otel_hardening_attempt", default=None)
"""The attempt running in this context: set by the engine around each attempt, never around the body."""

SocketOption = Any


def _cut(timeout: float | None, error: type[Exception]) -> float | None:
    attempt = ATTEMPT.get()
    deadline = None if attempt is None else attempt.deadline_at
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise error("the hardening deadline (RETRY_DEADLINE) of the request has passed")
    return left if timeout is None or timeout > left else timeout


def _cut_write(timeout: float | None) -> float | None:
    """``_cut`` for a write, which also ends an attempt's wait for a connection (phases.py)."""
    attempt = ATTEMPT.get()
    if attempt is None:
        return timeout
    if attempt.queued_at:
        attempt.got_connection(time.monotonic())
    deadline = attempt.deadline_at
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise httpcore.WriteTimeout("the hardening deadline (RETRY_DEADLINE) of the request has passed")
    return left if timeout is None or timeout > left else timeout


class _Lifetime:
    """A connection's open time and where its ``http.client.connection.duration`` goes when it closes."""

    __slots__ = ("attrs", "histogram", "opened")

    def __init__(self, attempt: Attempt, opened: float) -> None:
        self.histogram = attempt.telemetry.connection_duration
        self.attrs = attempt.upstream.pool_attrs
        self.opened = opened

    def closed(self) -> None:
        opened, self.opened = self.opened, 0.0
        if opened:  # once, whoever closes it first
            self.histogram.record(time.monotonic() - opened, self.attrs)


def _connecting() -> tuple[Attempt | None, float]:
    attempt = ATTEMPT.get()
    return attempt, (time.monotonic() if attempt is not None else 0.0)


def _connected(attempt: Attempt | None, start: float) -> _Lifetime | None:
    if attempt is None:
        return None  # a connection opened outside a hardened attempt: not measured
    end = time.monotonic()
    attempt.connected(start, end)
    return _Lifetime(attempt, end)


class DeadlineStream(httpcore.NetworkStream):
    # get_extra_info is the inner stream's own bound method (httpcore asks it twice per request)
    __slots__ = ("get_extra_info", "inner", "lifetime")

    def __init__(self, inner: httpcore.NetworkStream, lifetime: _Lifetime | None = None) -> None:
        self.inner = inner
        self.lifetime = lifetime
        self.get_extra_info = inner.get_extra_info  # type: ignore[method-assign]

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self.inner.read(max_bytes, _cut(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if buffer:  # httpcore writes b"" for an empty body and for its end: nothing to send, nothing to cut
            self.inner.write(buffer, _cut_write(timeout))

    def close(self) -> None:
        try:
            self.inner.close()
        finally:
            if self.lifetime is not None:
                self.lifetime.closed()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        attempt, start = _connecting()
        stream = self.inner.start_tls(ssl_context, server_hostname, _cut(timeout, httpcore.ConnectTimeout))
        if attempt is not None:
            attempt.connected(start, time.monotonic())
        return DeadlineStream(stream, self.lifetime)  # the TLS stream is the one httpcore closes


class DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self.inner = inner

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Iterable[SocketOption] | None = None) -> httpcore.NetworkStream:
        attempt, start = _connecting()
        timeout = _cut(timeout, httpcore.ConnectTimeout)
        stream = self.inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return DeadlineStream(stream, _connected(attempt, start))

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable[SocketOption] | None = None) -> httpcore.NetworkStream:
        attempt, start = _connecting()
        timeout = _cut(timeout, httpcore.ConnectTimeout)
        stream = self.inner.connect_unix_socket(path, timeout, socket_options)
        return DeadlineStream(stream, _connected(attempt, start))

    def sleep(self, seconds: float) -> None:
        self.inner.sleep(seconds)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class AsyncDeadlineStream(httpcore.AsyncNetworkStream):
    __slots__ = ("get_extra_info", "inner", "lifetime")

    def __init__(self, inner: httpcore.AsyncNetworkStream, lifetime: _Lifetime | None = None) -> None:
        self.inner = inner
        self.lifetime = lifetime
        self.get_extra_info = inner.get_extra_info  # type: ignore[method-assign]

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self.inner.read(max_bytes, _cut(timeout, httpcore.ReadTimeout))

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if buffer:
            await self.inner.write(buffer, _cut_write(timeout))

    async def aclose(self) -> None:
        try:
            await self.inner.aclose()
        finally:
            if self.lifetime is not None:
                self.lifetime.closed()

    async def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore.AsyncNetworkStream:
        attempt, start = _connecting()
        stream = await self.inner.start_tls(ssl_context, server_hostname, _cut(timeout, httpcore.ConnectTimeout))
        if attempt is not None:
            attempt.connected(start, time.monotonic())
        return AsyncDeadlineStream(stream, self.lifetime)


class AsyncDeadlineBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, inner: httpcore.AsyncNetworkBackend) -> None:
        self.inner = inner

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[SocketOption] | None = None) -> httpcore.AsyncNetworkStream:
        attempt, start = _connecting()
        timeout = _cut(timeout, httpcore.ConnectTimeout)
        stream = await self.inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return AsyncDeadlineStream(stream, _connected(attempt, start))

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[SocketOption] | None = None
                                  ) -> httpcore.AsyncNetworkStream:
        attempt, start = _connecting()
        timeout = _cut(timeout, httpcore.ConnectTimeout)
        stream = await self.inner.connect_unix_socket(path, timeout, socket_options)
        return AsyncDeadlineStream(stream, _connected(attempt, start))

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _bounded_pool_wait(request: httpcore.Request, left: float) -> httpcore.Request:
    """httpcore's per-attempt request, not the caller's, with the wait for a connection cut to ``left``:
    the body is read with the copy's timeouts, which differ from the caller's only in the pool wait,
    over by then."""
    bounded = copy.copy(request)
    timeouts = request.extensions.get("timeout", {})
    bounded.extensions = {**request.extensions, "timeout": {**timeouts, "pool": left}}
    return bounded


def _pool_entry(pool: Any, step: str) -> Callable[[httpcore.Request], Any]:
    """The pool's ``handle_request`` / ``handle_async_request`` (``step``): tells the attempt it started
    and bounds its wait for a connection by what is left of its deadline, then runs the pool's own step,
    looked up on the class at call time (a mock that patches the class later, respx say, still applies).

    The async step's coroutine is returned, not awaited: it is made here, in the caller's context, and
    awaited by httpcore's caller at once; one function serves both kinds of pool."""
    # httpcore mutates this list in place, never replaces it: read once, it stays the pool's queue
    # (hooks.py checked both private names; another kind of pool never counts as full)
    in_pool: Sized = ()
    max_connections = sys.maxsize
    if isinstance(pool, (httpcore.ConnectionPool, httpcore.AsyncConnectionPool)):
        in_pool, max_connections = pool._requests, pool._max_connections

    def entry(request: httpcore.Request) -> Any:
        attempt = ATTEMPT.get()
        if attempt is not None:
            if len(in_pool) >= max_connections:
                attempt.queued(time.monotonic())
            attempt.attempt_started()
            deadline = attempt.deadline_at
            if deadline is not None:
                left = max(0.001, deadline - time.monotonic())
                timeouts = request.extensions.get("timeout")
                pool_timeout = None if timeouts is None else timeouts.get("pool")
                if pool_timeout is None or pool_timeout > left:
                    request = _bounded_pool_wait(request, left)
        return getattr(type(pool), step)(pool, request)

    return entry


_WRAPPER_ATTRIBUTES = ("_transport", "transport")
_MAX_DEPTH = 4


def find_pool(transport: object, depth: int = 0) -> Any:
    """The httpcore connection pool under ``transport`` (through OpenTelemetry's wrapper), or None."""
    pool: Any = getattr(transport, "_pool", None)
    if pool is None and depth < _MAX_DEPTH:
        for name in _WRAPPER_ATTRIBUTES:
            inner = getattr(transport, name, None)
            if isinstance(inner, (httpx.BaseTransport, httpx.AsyncBaseTransport)) and inner is not transport:
                return find_pool(inner, depth + 1)
    return pool


def prepare_pool(transport: object) -> None:
    """Put the deadline-aware backend and the attempt-start call into ``transport``'s pool, once."""
    pool = find_pool(transport)
    backend = getattr(pool, "_network_backend", None)
    if backend is None or "_otel_hardening" in vars(pool):
        return
    if isinstance(backend, httpcore.NetworkBackend):
        pool._network_backend = DeadlineBackend(backend)
        pool.handle_request = _pool_entry(pool, "handle_request")
    elif isinstance(backend, httpcore.AsyncNetworkBackend):
        pool._network_backend = AsyncDeadlineBackend(backend)
        pool.handle_async_request = _pool_entry(pool, "handle_async_request")
    else:
        return
    pool._otel_hardening = True

"""What the layer puts under httpx's connection pool: the deadline on sockets, and the attempt's start.

**The retry deadline as a deadline**: every socket operation of an attempt ends by it.

httpx's timeouts are per operation: an upstream that trickles one header byte every 0.4 s never trips
a 5 s read timeout, and would hold a call with a 1.5 s deadline for as long as it likes. So while an
attempt of a retryable call runs, a context variable holds the call's absolute deadline, and the
connection pool's network backend cuts the timeout of each connect, read, write and TLS handshake to
what is left of it. When nothing is left the operation fails with httpcore's own timeout error, which
httpx turns into ``httpx.ConnectTimeout`` / ``ReadTimeout`` / ``WriteTimeout``: the caller sees the
same error a short timeout would have given.

The variable is set only for the attempt (connection and response headers); the body is read by the
caller after the response is handed over, under the caller's own timeouts. A call that cannot be
retried never sets it: its timeouts are exactly the ones the caller gave (``timeout=None`` stays
unlimited). DNS resolution inside ``connect`` is not interruptible (the system resolver has no
timeout to cut), which is the one documented gap.

**The attempt's start.** The attempt's CLIENT span (opentelemetry-instrumentation-httpx) is reached
through httpcore's ``trace`` extension, which httpcore first calls when it connects or sends. An
attempt that fails before (a ``PoolTimeout`` waiting for a connection) never calls it, and its span
would keep the unredacted URL. So the pool calls the attempt hook as it is entered, too.

Only pools that have a ``_network_backend`` (httpx's ``HTTPTransport`` and its proxy pools) get the
wrappers, installed once per pool on the pool instance (``transport._pool`` stays the same object);
other transports (mocks, custom ones) keep the engine's per-attempt timeout cap and the trace hook.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from contextvars import ContextVar
from typing import Any

import httpcore

DEADLINE: ContextVar[float | None] = ContextVar("otel_hardening_deadline", default=None)
"""Absolute ``time.monotonic()`` by which the current attempt's socket operations must end."""

SocketOption = Any


def _cut(timeout: float | None, error: type[Exception]) -> float | None:
    deadline = DEADLINE.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise error("the hardening deadline (RETRY_DEADLINE) of the request has passed")
    return left if timeout is None or timeout > left else timeout


class DeadlineStream(httpcore.NetworkStream):
    __slots__ = ("inner",)

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self.inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self.inner.read(max_bytes, _cut(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.inner.write(buffer, _cut(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self.inner.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        return DeadlineStream(self.inner.start_tls(ssl_context, server_hostname,
                                                   _cut(timeout, httpcore.ConnectTimeout)))

    def get_extra_info(self, info: str) -> Any:
        return self.inner.get_extra_info(info)


class DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self.inner = inner

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Iterable[SocketOption] | None = None) -> httpcore.NetworkStream:
        timeout = _cut(timeout, httpcore.ConnectTimeout)
        return DeadlineStream(self.inner.connect_tcp(host, port, timeout, local_address, socket_options))

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable[SocketOption] | None = None) -> httpcore.NetworkStream:
        timeout = _cut(timeout, httpcore.ConnectTimeout)
        return DeadlineStream(self.inner.connect_unix_socket(path, timeout, socket_options))

    def sleep(self, seconds: float) -> None:
        self.inner.sleep(seconds)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class AsyncDeadlineStream(httpcore.AsyncNetworkStream):
    __slots__ = ("inner",)

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self.inner = inner

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self.inner.read(max_bytes, _cut(timeout, httpcore.ReadTimeout))

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self.inner.write(buffer, _cut(timeout, httpcore.WriteTimeout))

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore.AsyncNetworkStream:
        return AsyncDeadlineStream(await self.inner.start_tls(ssl_context, server_hostname,
                                                              _cut(timeout, httpcore.ConnectTimeout)))

    def get_extra_info(self, info: str) -> Any:
        return self.inner.get_extra_info(info)


class AsyncDeadlineBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, inner: httpcore.AsyncNetworkBackend) -> None:
        self.inner = inner

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[SocketOption] | None = None) -> httpcore.AsyncNetworkStream:
        timeout = _cut(timeout, httpcore.ConnectTimeout)
        return AsyncDeadlineStream(await self.inner.connect_tcp(host, port, timeout, local_address, socket_options))

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[SocketOption] | None = None
                                  ) -> httpcore.AsyncNetworkStream:
        timeout = _cut(timeout, httpcore.ConnectTimeout)
        return AsyncDeadlineStream(await self.inner.connect_unix_socket(path, timeout, socket_options))

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _attempt_started(request: httpcore.Request) -> None:
    started = getattr(request.extensions.get("trace"), "attempt_started", None)
    if started is not None:
        started()


def prepare_pool(transport: object) -> None:
    """Put the deadline-aware backend and the attempt-start call into ``transport``'s pool, once."""
    pool: Any = getattr(transport, "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if backend is None or "_otel_hardening" in vars(pool):
        return
    if isinstance(backend, httpcore.NetworkBackend):
        pool._network_backend = DeadlineBackend(backend)
        # looked up on the class at call time: a mock that patches the class later (respx) still applies
        def handle_request(request: httpcore.Request) -> httpcore.Response:
            _attempt_started(request)
            return type(pool).handle_request(pool, request)  # type: ignore[no-any-return]

        pool.handle_request = handle_request
    elif isinstance(backend, httpcore.AsyncNetworkBackend):
        pool._network_backend = AsyncDeadlineBackend(backend)
        async def handle_async_request(request: httpcore.Request) -> httpcore.Response:
            _attempt_started(request)
            return await type(pool).handle_async_request(pool, request)  # type: ignore[no-any-return]

        pool.handle_async_request = handle_async_request
    else:
        return
    pool._otel_hardening = True

"""httpx transports that harden whatever transport they wrap (sync and async faces of one engine).

The loop of one logical request: take a circuit permit, send one attempt through ``inner``, ask the
engine whether and how long to wait, wait, repeat. What it guarantees the host application:

- Only httpx's errors (or the caller's) reach the caller. The engine's own bookkeeping runs under
  :func:`_guard`: if it ever fails, the failure is logged once and the request carries on unhardened
  with the real response or error. ``CircuitOpenError`` (an ``httpx.TransportError``) is the one
  error of this layer's own, raised only when a first attempt is refused.
- Streams are never held back: the response is handed over as soon as its headers arrive, its body
  untouched, so ``client.stream()`` and ``send(stream=True)`` get their first byte when plain httpx
  would. A reset mid-body is therefore the caller's ``httpx.ReadError`` and is not retried: retrying
  it would mean reading the body inside this layer first, delaying every server-sent-events or
  long-poll stream by as much as was read.
- Every response that is not handed over is closed (its connection goes back to the pool), also
  when a wait is cancelled; a retried response stays open only during the wait, so that if the
  circuit opens meanwhile the caller gets that real response instead of a ``CircuitOpenError``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from types import TracebackType
from typing import TypeVar

import anyio
import httpx

from otel_hardening._logging import log_once
from otel_hardening.http.engine import Call, Engine
from otel_hardening.http.errors import CircuitOpenError

T = TypeVar("T")
Outcome = httpx.Response | Exception | None


def _begin(engine: Engine, request: httpx.Request) -> Call | None:
    if not engine.active():
        return None
    try:
        return engine.begin(request)
    except (TypeError, ValueError):
        raise  # a bad request.extensions["hardening"] is the caller's error, said clearly
    except Exception:
        _failed()
        return None


def _failed() -> None:
    log_once("engine", logging.ERROR,
             "otel_hardening: hardening failed for a request; it goes on unhardened", exc_info=True)


class _Broken(Exception):
    """The engine failed: the call goes on (or ends) as if it had not been hardened."""


def _guard(call: Call, step: Callable[..., T], *args: object) -> T:
    try:
        return step(*args)
    except CircuitOpenError:
        raise
    except Exception:
        _failed()
        call.abandon()
        raise _Broken from None


def _give(last: Outcome) -> httpx.Response:
    """The last attempt's answer, handed to the caller when a retry is refused a circuit permit."""
    if isinstance(last, Exception):
        raise last
    assert last is not None
    return last


class HardenedTransport(httpx.BaseTransport):
    """Circuit breaker, retries and telemetry around ``inner``; each attempt goes through ``inner``."""

    def __init__(self, inner: httpx.BaseTransport, engine: Engine) -> None:
        self.inner = inner
        self.engine = engine

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        call = _begin(self.engine, request)
        if call is None:
            return self.inner.handle_request(request)
        last: Outcome = None
        try:
            while True:
                try:
                    if not _guard(call, call.before_attempt):
                        return _give(last)
                    if isinstance(last, httpx.Response):
                        last.close()
                    last = None
                    _guard(call, call.install_attempt_hook, False)
                except _Broken:
                    if isinstance(last, httpx.Response):
                        last.close()
                    return self.inner.handle_request(request)
                try:
                    with call.attempt_scope():
                        response = self.inner.handle_request(request)
                except Exception as exc:
                    delay = _decide(call, call.on_error, exc)
                    if delay is None:
                        raise
                    last = exc
                else:
                    last = response
                    delay = _decide(call, call.on_response, response)
                    if delay is None:
                        return response
                time.sleep(delay)
        except BaseException:
            call.abandon()
            if isinstance(last, httpx.Response):
                last.close()
            raise

    def close(self) -> None:
        self.inner.close()

    def __enter__(self) -> HardenedTransport:
        self.inner.__enter__()
        return self

    def __exit__(self, exc_type: type[BaseException] | None = None, exc_value: BaseException | None = None,
                 traceback: TracebackType | None = None) -> None:
        self.inner.__exit__(exc_type, exc_value, traceback)


def _decide(call: Call, step: Callable[[T], float | None], outcome: T) -> float | None:
    """Seconds until the next attempt, or None: ``outcome`` is the answer (also if the engine failed)."""
    try:
        return _guard(call, step, outcome)
    except _Broken:
        return None


class AsyncHardenedTransport(httpx.AsyncBaseTransport):
    """The async face of :class:`HardenedTransport`; the engine is the same."""

    def __init__(self, inner: httpx.AsyncBaseTransport, engine: Engine) -> None:
        self.inner = inner
        self.engine = engine

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        call = _begin(self.engine, request)
        if call is None:
            return await self.inner.handle_async_request(request)
        last: Outcome = None
        try:
            while True:
                try:
                    if not _guard(call, call.before_attempt):
                        return _give(last)
                    if isinstance(last, httpx.Response):
                        await last.aclose()
                    last = None
                    _guard(call, call.install_attempt_hook, True)
                except _Broken:
                    if isinstance(last, httpx.Response):
                        await last.aclose()
                    return await self.inner.handle_async_request(request)
                try:
                    with call.attempt_scope():
                        response = await self.inner.handle_async_request(request)
                except Exception as exc:
                    delay = _decide(call, call.on_error, exc)
                    if delay is None:
                        raise
                    last = exc
                else:
                    last = response
                    delay = _decide(call, call.on_response, response)
                    if delay is None:
                        return response
                await anyio.sleep(delay)
        except BaseException:
            call.abandon()
            if isinstance(last, httpx.Response):
                with anyio.CancelScope(shield=True):
                    await last.aclose()
            raise

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def __aenter__(self) -> AsyncHardenedTransport:
        await self.inner.__aenter__()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None = None,
                        exc_value: BaseException | None = None, traceback: TracebackType | None = None) -> None:
        await self.inner.__aexit__(exc_type, exc_value, traceback)

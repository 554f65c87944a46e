"""The hardened send of a client: circuit, retries and telemetry around each single request.

**Design: the client's own per-request step is hardened in place; its transports are untouched.**
httpx sends one request (one redirect hop) through ``Client._send_single_request``, which picks the
transport for the URL (mounts included) and calls its ``handle_request``. ``harden()`` sets an
instance attribute ``_send_single_request`` on the client: a small callable holding the engine,
which runs the loop below and, for each attempt, calls the class's own ``_send_single_request``
(a subclass's override included). So:

- ``client._transport`` and ``client._mounts`` stay the objects the application made:
  ``isinstance(client._transport, httpx.HTTPTransport)`` and ``transport._pool`` keep working;
- ``HTTPXClientInstrumentor.instrument_client(client)`` wraps that transport's ``handle_request``,
  which runs once per attempt: one CLIENT span per attempt, and ``uninstrument_client`` removes them;
- transport-level mocks (respx, ``httpx.MockTransport``) see one call per attempt: only the
  documented retries change their call counts;
- httpx's own per-request work (cookies, ``response.elapsed``, its ``HTTP Request:`` log line) happens
  per attempt, as it would for requests the application retried itself.

Wrapping the transport instead (an ``httpx.BaseTransport`` around the original) would hide the
transport's type and attributes from code that inspects them, and ``instrument_client`` would wrap
the wrapper: one CLIENT span around all attempts. The one thing added under the transport is in
deadline.py (the deadline on sockets and the attempt's start).

The loop of one logical request: take a circuit permit, send one attempt, ask the engine whether
and how long to wait, wait, repeat. What it guarantees the host application:

- Only httpx's errors (or the caller's) reach the caller. Each of the engine's steps runs in a
  ``try`` of the loop: if one ever fails, the failure is counted (``hardening.bypassed``), logged
  once, and the request carries on unhardened with the real response or error. ``CircuitOpenError``
  (an ``httpx.TransportError``) is the one error of this layer's own, raised only when a first
  attempt is refused.
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
import weakref
from collections.abc import Awaitable, Callable

import anyio
import httpx

from otel_hardening._logging import log_once
from otel_hardening.http import bypass
from otel_hardening.http.engine import Call, Engine
from otel_hardening.http.errors import CircuitOpenError

Outcome = httpx.Response | Exception | None


def _failed() -> None:
    bypass.record(bypass.INTERNAL_ERROR, "the engine failed for a request (see the otel_hardening log)")
    log_once("engine", logging.ERROR,
             "otel_hardening: hardening failed for a request; it goes on unhardened", exc_info=True)


def _engine_failed(call: Call) -> None:
    """A step of the engine raised: logged once, counted, and the call goes on unhardened (None)."""
    _failed()
    call.abandon()


def _last_answer(last: Outcome) -> httpx.Response:
    """The last attempt's answer, handed to the caller when a retry is refused a circuit permit."""
    if isinstance(last, Exception):
        raise last
    assert last is not None
    return last


def hardened_send(client: httpx.Client | httpx.AsyncClient) -> HardenedSend | AsyncHardenedSend | None:
    """The hardened send installed on ``client``, or None.

    The client's ``_send_single_request`` is its bound ``__call__``: httpx calls a bound method about
    twice as fast as an object's ``__call__`` (no special-method lookup, no call through C)."""
    owner = getattr(vars(client).get("_send_single_request"), "__self__", None)
    return owner if isinstance(owner, (HardenedSend, AsyncHardenedSend)) else None


class HardenedSend:
    """``client._send_single_request`` (bound ``__call__``) of a hardened ``httpx.Client``: the loop
    around each attempt."""

    __slots__ = ("client", "engine", "previous")

    def __init__(self, client: httpx.Client, engine: Engine) -> None:
        self.client = weakref.ref(client)  # the client holds this; no reference cycle back
        self.engine = engine
        self.previous: Callable[[httpx.Request], httpx.Response] | None = None
        """An instance-level ``_send_single_request`` someone set before us (else the class's)."""

    def _attempt(self, request: httpx.Request) -> httpx.Response:
        if self.previous is not None:
            return self.previous(request)
        client = self.client()
        if client is None:
            raise RuntimeError("the httpx client was garbage-collected while sending")
        return type(client)._send_single_request(client, request)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        # The engine's steps run inline (a Python call costs as much as a step's work), each guarded:
        # if one raises, the failure is counted and logged once, and the call goes on unhardened.
        engine = self.engine
        if not engine.active:
            return self._attempt(request)
        try:
            call = engine.begin(request)
        except (TypeError, ValueError):
            raise  # a bad request.extensions["hardening"] is the caller's error, said clearly
        except Exception:
            _failed()
            return self._attempt(request)
        previous, client = self.previous, self.client()  # HardenedSend._attempt, inlined
        if previous is None and client is None:
            raise RuntimeError("the httpx client was garbage-collected while sending")
        last: Outcome = None
        try:
            while True:
                try:
                    permitted = call.before_attempt()
                except CircuitOpenError:
                    raise
                except Exception:
                    _engine_failed(call)
                    permitted = None
                if permitted is False:
                    return _last_answer(last)
                if isinstance(last, httpx.Response):
                    last.close()
                last = None
                if permitted is None:
                    return self._attempt(request)
                try:
                    call.enter_attempt()
                    try:
                        if previous is not None:
                            response = previous(request)
                        else:
                            assert client is not None
                            response = type(client)._send_single_request(client, request)
                    finally:
                        call.exit_attempt()
                except Exception as exc:
                    try:
                        delay = call.on_error(exc)
                    except Exception:
                        _engine_failed(call)
                        delay = None
                    if delay is None:
                        raise  # exc, as httpx raised it (the handler above, if it ran, is over)
                    last = exc
                else:
                    last = response
                    try:
                        delay = call.on_response(response)
                    except Exception:
                        _engine_failed(call)
                        delay = None
                    if delay is None:
                        return response
                time.sleep(delay)
        except BaseException:
            call.abandon()
            if isinstance(last, httpx.Response):
                last.close()
            raise


class AsyncHardenedSend:
    """``client._send_single_request`` of a hardened ``httpx.AsyncClient``; the engine is the same."""

    __slots__ = ("client", "engine", "previous")

    def __init__(self, client: httpx.AsyncClient, engine: Engine) -> None:
        self.client = weakref.ref(client)
        self.engine = engine
        self.previous: Callable[[httpx.Request], Awaitable[httpx.Response]] | None = None

    async def _attempt(self, request: httpx.Request) -> httpx.Response:
        if self.previous is not None:
            return await self.previous(request)
        client = self.client()
        if client is None:
            raise RuntimeError("the httpx client was garbage-collected while sending")
        return await type(client)._send_single_request(client, request)

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        # as HardenedSend.__call__
        engine = self.engine
        if not engine.active:
            return await self._attempt(request)
        try:
            call = engine.begin(request)
        except (TypeError, ValueError):
            raise  # a bad request.extensions["hardening"] is the caller's error, said clearly
        except Exception:
            _failed()
            return await self._attempt(request)
        previous, client = self.previous, self.client()  # HardenedSend._attempt, inlined
        if previous is None and client is None:
            raise RuntimeError("the httpx client was garbage-collected while sending")
        last: Outcome = None
        try:
            while True:
                try:
                    permitted = call.before_attempt()
                except CircuitOpenError:
                    raise
                except Exception:
                    _engine_failed(call)
                    permitted = None
                if permitted is False:
                    return _last_answer(last)
                if isinstance(last, httpx.Response):
                    await last.aclose()
                last = None
                if permitted is None:
                    return await self._attempt(request)
                try:
                    call.enter_attempt()
                    try:
                        if previous is not None:
                            response = await previous(request)
                        else:
                            assert client is not None
                            response = await type(client)._send_single_request(client, request)
                    finally:
                        call.exit_attempt()
                except Exception as exc:
                    try:
                        delay = call.on_error(exc)
                    except Exception:
                        _engine_failed(call)
                        delay = None
                    if delay is None:
                        raise
                    last = exc
                else:
                    last = response
                    try:
                        delay = call.on_response(response)
                    except Exception:
                        _engine_failed(call)
                        delay = None
                    if delay is None:
                        return response
                await anyio.sleep(delay)
        except BaseException:
            call.abandon()
            if isinstance(last, httpx.Response):
                with anyio.CancelScope(shield=True):
                    await last.aclose()
            raise

"""The outbox: which failed calls are stored, and the hook the hardened send calls.

The hook wraps a logical call (all of hardening's attempts). Before the call it gives a deferrable
request an ``Idempotency-Key`` (unless it has one): the upstream may have applied an attempt that
timed out, and only the key makes a later replay of it harmless. With the key, hardening also treats
the request as idempotent and retries it. After the call, a retryable failure (circuit open, connect
error, timeout, 429/503 after the retries) stores the request and raises :class:`RequestDeferred`.
"""

from __future__ import annotations

import logging
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import httpx
from opentelemetry import metrics, trace

from otel_hardening._logging import log_once
from otel_hardening.http import policy as pol
from otel_hardening.http.errors import CircuitOpenError
from otel_hardening.http.registry import upstream_name
from otel_hardening.outbox import _health
from otel_hardening.outbox._errors import ConfigurationError, OutboxRefused, RequestDeferred, StoreError, StoreFull
from otel_hardening.outbox._model import Entry, Store, new_id
from otel_hardening.outbox._policy import NEVER_DEFERRED, OutboxPolicy, check_name, default_name
from otel_hardening.outbox._stores import open_store
from otel_hardening.outbox._telemetry import OutboxTelemetry

if TYPE_CHECKING:
    from otel_hardening.http.engine import Engine
    from otel_hardening.outbox._replayer import Replayer

EXTENSION = "outbox"
"""``request.extensions["outbox"]``: True defers this request if it fails, False never."""
REPLAY = "replay"
"""The extension's value on replays: they are never deferred again."""
IDEMPOTENCY_KEY = "Idempotency-Key"
_TIMEOUTS = (httpx.ConnectTimeout, httpx.ReadTimeout, httpx.WriteTimeout)

BeforeReplay = Callable[[httpx.Request], httpx.Request]


def _note(exc: BaseException, reason: str, detail: str) -> None:
    """Say on the app's own exception why it was not deferred, without changing its type."""
    text = f"otel_hardening outbox: not deferred ({reason}): {detail}"
    exc.outbox_not_deferred = reason  # type: ignore[attr-defined]
    if hasattr(exc, "add_note"):
        exc.add_note(text)
    else:  # Python 3.10: the attribute add_note() sets
        exc.__notes__ = [*getattr(exc, "__notes__", []), text]  # type: ignore[attr-defined]


class Outbox:
    """Durable storage and replay of writes that failed for a retryable reason.

    ``harden(client, outbox=Outbox(...))`` turns it on for a client. ``store`` is a file path (SQLite,
    the default is one file per app under ``$XDG_STATE_HOME/otel-hardening``) or a ``redis://`` URL
    shared by several processes. ``before_replay(request) -> request`` runs before each replay (fresh
    credentials); it is required while ``policy.strip_headers`` keeps credentials out of the store.
    ``replay_client`` sends the replays (default: the last sync client hardened with this outbox, else
    a client of the outbox's own with the same policies). ``replay=False``: this process only defers
    (web workers, say) and another one replays the shared store.
    """

    def __init__(self, store: str | Store = "", *, policy: OutboxPolicy | None = None, name: str = "",
                 before_replay: BeforeReplay | None = None, replay_client: httpx.Client | None = None,
                 replay: bool = True,
                 tracer_provider: trace.TracerProvider | None = None,
                 meter_provider: metrics.MeterProvider | None = None) -> None:
        self.policy = policy or OutboxPolicy()
        if not isinstance(self.policy, OutboxPolicy):
            raise ConfigurationError(f"Outbox(policy={policy!r}): accepted an OutboxPolicy")
        self.name = check_name(name or default_name())
        if before_replay is not None and not callable(before_replay):
            raise ConfigurationError(f"Outbox(before_replay={before_replay!r}): accepted a function "
                                     "request -> request")
        if self.policy.strip_headers and before_replay is None:
            raise ConfigurationError(
                f"Outbox: strip_headers={sorted(self.policy.strip_headers)} keeps credentials out of the store, "
                "so replays would go out unauthenticated; pass before_replay=<function request -> request> "
                "that signs the replay (lambda r: r if the replay client's auth= signs it), or "
                "OutboxPolicy(strip_headers=()) to store credentials with the requests")
        self.before_replay = before_replay
        self.store = store if isinstance(store, Store) else open_store(
            store, name=self.name, max_entries=self.policy.max_entries, max_bytes=self.policy.max_bytes)
        self.telemetry = OutboxTelemetry(self.name, self.store.stats, tracer_provider=tracer_provider,
                                         meter_provider=meter_provider)
        self._replay_client = replay_client
        self.replays = bool(replay)
        self._clients: list[weakref.ref[httpx.Client]] = []
        self.engine: Engine | None = None
        from otel_hardening.outbox._replayer import Replayer

        self.replayer: Replayer = Replayer(self)
        _track(self)
        _health.register(self)

    def __repr__(self) -> str:
        return f"Outbox(name={self.name!r}, store={self.store.location!r})"

    # --- wiring ---------------------------------------------------------------------------------
    def attach(self, client: httpx.Client | httpx.AsyncClient | None, engine: Engine) -> None:
        """Called by ``harden(client, outbox=...)``: remember a sync client for replays, start replaying.

        ``install(outbox=...)`` passes no client: it hardens every client the app builds, any of which
        may hold another upstream's credentials, and remembering each would grow without bound; its
        replays go through a client of the outbox's own with the installed policies."""
        self.engine = engine
        if isinstance(client, httpx.Client):
            self._clients = [ref for ref in self._clients if ref() is not None]
            self._clients.append(weakref.ref(client))
        self.replayer.start()

    def replay_client(self) -> httpx.Client:
        if self._replay_client is not None:
            return self._replay_client
        for ref in reversed(self._clients):
            client = ref()
            if client is not None and not client.is_closed:
                return client
        return self.replayer.own_client()

    def start(self) -> None:
        """Start replaying (``harden()`` does it); safe to call again, and after a fork."""
        self.replayer.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop replaying from this process (the store keeps everything)."""
        self.replayer.stop(timeout)

    def close(self) -> None:
        """Stop replaying, leave the health report and release the store (its data stays)."""
        self.stop()
        _health.unregister(self)
        self.store.close()

    # --- the hook -------------------------------------------------------------------------------
    def _wanted(self, request: httpx.Request) -> bool:
        mark = request.extensions.get(EXTENSION)
        if mark is None:
            return self.policy.defer_all and request.method not in NEVER_DEFERRED
        if mark is True:
            if request.method in NEVER_DEFERRED:
                raise ValueError(f'request.extensions["outbox"]=True on a {request.method}: reads are never '
                                 "deferred (accepted on POST, PUT, PATCH, DELETE)")
            return True
        if mark is False or mark == REPLAY:
            return False
        raise TypeError(f'request.extensions["outbox"]={mark!r}: accepted True or False')

    def _prepare(self, request: httpx.Request) -> bool:
        if not self._wanted(request):
            return False
        if IDEMPOTENCY_KEY not in request.headers:
            request.headers[IDEMPOTENCY_KEY] = str(uuid.uuid4())
        self.replayer.ensure()  # cheap when running; restarts it in a forked child
        return True

    def _reason(self, exc: Exception) -> str | None:
        """Why the call failed, if that is a reason to defer it; None for any other failure."""
        if isinstance(exc, CircuitOpenError):
            return "circuit_open"
        if pol.is_retryable_error(exc) or isinstance(exc, _TIMEOUTS):
            return pol.error_type(exc)
        return None

    def _refusal(self, request: httpx.Request) -> tuple[str, str] | None:
        if not pol.is_replayable(request):
            return "not_replayable", "the body is a stream or generator, which cannot be sent again"
        size = len(request.content)
        if size > self.policy.max_body:
            return "too_large", f"the body is {size} bytes, more than max_body={self.policy.max_body}"
        return None

    def _entry(self, request: httpx.Request) -> Entry:
        strip = self.policy.strip_headers
        headers = tuple((k, v) for k, v in request.headers.multi_items() if k.lower() not in strip)
        ctx = trace.get_current_span().get_span_context()
        trace_id, span_id = (f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}") if ctx.is_valid else ("", "")
        return Entry(new_id(), upstream_name(request.url)[0], request.method, str(request.url), headers,
                     request.content, time.time(), trace_id=trace_id, span_id=span_id)

    def _store(self, entry: Entry, request: httpx.Request, reason: str, response: httpx.Response | None,
               cause: Exception | None = None) -> RequestDeferred:
        try:
            self.store.put(entry)
        except StoreError as exc:
            kind = "full" if isinstance(exc, StoreFull) else "store_error"
            self.telemetry.refused.add(1, self.telemetry.with_attrs(**{"hardening.outbox.reason": kind}))
            if kind == "store_error":
                log_once(f"outbox:put:{self.name}", logging.ERROR, "otel_hardening: %s", exc)
            raise OutboxRefused(kind, str(exc), request=request, response=response) from cause
        _, host, port = upstream_name(request.url)
        self.telemetry.deferred.add(1, self.telemetry.with_attrs(**{"server.address": host, "server.port": port}))
        self.replayer.wake()
        key = request.headers[IDEMPOTENCY_KEY]
        return RequestDeferred(entry.id, entry.upstream, reason, key, request=request, response=response)

    def _refused(self, reason: str) -> None:
        self.telemetry.refused.add(1, self.telemetry.with_attrs(**{"hardening.outbox.reason": reason}))

    def after_error(self, request: httpx.Request, exc: Exception) -> Exception | None:
        """The exception to raise instead of ``exc`` (RequestDeferred, OutboxRefused), or None."""
        reason = self._reason(exc)
        if reason is None:
            return None
        refusal = self._refusal(request)
        if refusal is not None:
            self._refused(refusal[0])
            _note(exc, *refusal)
            return None
        return self._store(self._entry(request), request, reason, None, exc)

    def _response_entry(self, request: httpx.Request, response: httpx.Response) -> Entry | None:
        """The entry to store for a 429/503 answer, or None (another answer, or not deferrable)."""
        if response.status_code not in self.policy.defer_statuses:
            return None
        refusal = self._refusal(request)
        if refusal is not None:
            self._refused(refusal[0])
            response.extensions["outbox_not_deferred"] = f"{refusal[0]}: {refusal[1]}"
            return None
        return self._entry(request)

    def after_response(self, request: httpx.Request, response: httpx.Response) -> Exception | None:
        entry = self._response_entry(request, response)
        if entry is None:
            return None
        response.close()
        return self._store(entry, request, str(response.status_code), response)

    def send(self, request: httpx.Request, call: Callable[[httpx.Request], httpx.Response]) -> httpx.Response:
        """The hardened send of one request (``call``), deferring it if it fails for a retryable reason."""
        if not self._prepare(request):
            return call(request)
        try:
            response = call(request)
        except Exception as exc:
            replacement = self.after_error(request, exc)
            if replacement is None:
                raise
            raise replacement from exc
        replacement = self.after_response(request, response)
        if replacement is not None:
            raise replacement
        return response

    async def asend(self, request: httpx.Request,
                    call: Callable[[httpx.Request], Awaitable[httpx.Response]]) -> httpx.Response:
        """``send`` for async clients; the store is written on a worker thread (it fsyncs)."""
        import anyio.to_thread

        if not self._prepare(request):
            return await call(request)
        try:
            response = await call(request)
        except Exception as exc:
            replacement = await anyio.to_thread.run_sync(self.after_error, request, exc)
            if replacement is None:
                raise
            raise replacement from exc
        entry = self._response_entry(request, response)
        if entry is None:
            return response
        await response.aclose()
        raise await anyio.to_thread.run_sync(self._store, entry, request, str(response.status_code), response)


_outboxes: weakref.WeakSet[Outbox] = weakref.WeakSet()


def _track(outbox: Outbox) -> None:
    _outboxes.add(outbox)


def _after_fork() -> None:
    """In a forked child: no replayer thread, lock or connection of the parent's is used."""
    for outbox in list(_outboxes):
        try:
            outbox.store.after_fork()
            outbox.replayer.after_fork()
        except Exception:  # never break the fork
            pass


def _register_fork_hook() -> None:
    import os

    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_after_fork)


_register_fork_hook()

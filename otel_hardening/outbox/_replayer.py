"""The replayer of each outbox, and the one daemon thread of a process that runs them all.

A replayer's round is due when a request is deferred, when a circuit closes (the registry's transition
listener), when an entry's backoff is due, and every ``policy.poll`` seconds (entries of other
processes). Each round works each upstream's queue from its head: delivered entries are removed, a
failure stops that upstream's round (nothing behind it overtakes it) and schedules the head again with
backoff; ``policy.concurrency`` sends of one upstream overlap. One thread runs the due rounds of every
started outbox, one after the other: a process with ten outboxes has one replay thread, not ten. It
never raises into the application: failures of the store or of a replay are logged once and retried.

Fork: a child process inherits no thread, lock or connection of the parent's (``after_fork``); its
replayers start on their next deferrable request or ``Outbox.start()``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING

import httpx
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from otel_hardening._logging import log_once, logger
from otel_hardening.http import policy as pol
from otel_hardening.http.errors import CircuitOpenError
from otel_hardening.outbox import _telemetry as tm
from otel_hardening.outbox._model import CONSUMER, Entry

if TYPE_CHECKING:
    from otel_hardening.outbox._outbox import Outbox

_PERMANENT_TEXT = "rejected"


class _Result:
    __slots__ = ("error", "outcome", "permanent", "retry_in")

    def __init__(self, outcome: str, error: str = "", permanent: bool = False, retry_in: float = 0.0) -> None:
        self.outcome, self.error, self.permanent, self.retry_in = outcome, error, permanent, retry_in


class _Scheduler:
    """The process's replay thread: it runs each started replayer's round when it is due, and exits when
    no replayer is left (started again by the next ``add``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self.thread: threading.Thread | None = None
        self._due: dict[Replayer, float] = {}
        """Each started replayer, and when its next round is due (monotonic)."""

    def add(self, replayer: Replayer) -> None:
        with self._lock:
            self._due[replayer] = 0.0
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, daemon=True, name="otel-hardening-outbox")
                self.thread.start()
        self._wake.set()

    def remove(self, replayer: Replayer) -> None:
        with self._lock:
            self._due.pop(replayer, None)

    def running(self, replayer: Replayer) -> threading.Thread | None:
        with self._lock:
            return self.thread if replayer in self._due else None

    def wake(self, replayer: Replayer) -> None:
        with self._lock:
            if replayer in self._due:
                self._due[replayer] = 0.0
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.clear()  # a wake from here on is seen by the wait below
            started = time.monotonic()
            with self._lock:
                if not self._due:
                    self.thread = None
                    return
                due = [replayer for replayer, at in self._due.items() if at <= started]
            for replayer in due:
                wait = replayer.run_round()
                with self._lock:
                    if replayer in self._due and self._due[replayer] <= started:  # not stopped, nor woken meanwhile
                        self._due[replayer] = time.monotonic() + wait
            with self._lock:
                wait = min(self._due.values(), default=0.0) - time.monotonic()
            self._wake.wait(max(0.01, wait))

    def after_fork(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self.thread = None
        self._due = {}


_SCHEDULER = _Scheduler()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_SCHEDULER.after_fork)


class Replayer:
    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self._lock = threading.Lock()
        self._busy = threading.Lock()
        """Held while a round runs: ``stop()`` waits for it."""
        self._stopping = threading.Event()
        self._pid = os.getpid()
        self._closed: set[str] = set()
        self._due: dict[str, float] = {}
        """When this process scheduled each upstream's failed head again (monotonic)."""
        self._own: httpx.Client | None = None
        self._unlisten: object = None
        self.consumer = CONSUMER
        self.rounds = 0
        self._wanted = False
        """Started and not stopped: ``ensure()`` restarts it where the thread is gone (a forked child)."""

    # --- lifecycle ------------------------------------------------------------------------------
    def ensure(self) -> None:
        """Start again if it should run but does not (in a forked child, or after a crash of the thread)."""
        if self._wanted:
            self.start()

    @property
    def _thread(self) -> threading.Thread | None:
        """The replay thread while this replayer is started in this process, else None."""
        return _SCHEDULER.running(self) if self._pid == os.getpid() else None

    def start(self) -> None:
        if not self.outbox.replays:
            return
        self._wanted = True
        thread = self._thread
        if thread is not None and thread.is_alive():
            return
        with self._lock:
            if self._pid != os.getpid():
                self.after_fork()
            self._stopping.clear()
            if self._unlisten is None:
                from otel_hardening.http.transitions import add_transition_listener

                self._unlisten = add_transition_listener(self._on_transition)
            _SCHEDULER.add(self)

    def stop(self, timeout: float = 5.0) -> None:
        self._wanted = False
        self._stopping.set()
        _SCHEDULER.remove(self)
        if _SCHEDULER.thread is not threading.current_thread() and self._busy.acquire(timeout=timeout):
            self._busy.release()  # the round in progress, if any, is over
        if callable(self._unlisten):
            self._unlisten()
            self._unlisten = None
        own, self._own = self._own, None
        if own is not None:
            with contextlib.suppress(Exception):
                own.close()

    def after_fork(self) -> None:
        self._lock = threading.Lock()
        self._busy = threading.Lock()
        self._stopping = threading.Event()
        self._own = None  # the parent's pooled connections are the parent's
        self._pid = os.getpid()
        self.consumer = f"{CONSUMER.rsplit(':', 2)[0]}:{os.getpid()}:{secrets.token_hex(3)}"

    def wake(self) -> None:
        _SCHEDULER.wake(self)

    def _on_transition(self, upstream: str, old: str, new: str) -> None:
        if new == "closed":
            self._closed.add(upstream)
            _SCHEDULER.wake(self)

    def own_client(self) -> httpx.Client:
        if self._own is None:
            from otel_hardening.http.harden import harden, wrap_client

            client = httpx.Client(timeout=30.0)
            engine = self.outbox.engine
            if engine is not None:
                wrap_client(client, engine)  # the same policies, so the same circuits as the app's
            else:
                harden(client)
            self._own = client
        return self._own

    # --- the loop -------------------------------------------------------------------------------
    def run_round(self) -> float:
        """One round on the replay thread, never raising; seconds until the next one is due."""
        wait = self.outbox.policy.poll
        with self._busy:
            if self._stopping.is_set():
                return wait
            try:
                wait = min(wait, self.round())
            except Exception as exc:  # the store is down: say it once, try again later
                log_once(f"outbox:replay:{self.outbox.name}", logging.WARNING,
                         "otel_hardening: outbox replay paused: %s", exc)
        return wait

    def round(self) -> float:
        """Work every upstream's queue once; seconds until something is due again."""
        self.rounds += 1
        store = self.outbox.store
        closed, self._closed = self._closed, set()
        now = time.monotonic()
        due = min([self.outbox.policy.poll, *(at - now for at in self._due.values())])
        self._due = {up: at for up, at in self._due.items() if at > now}
        for upstream in store.upstreams():
            if self._stopping.is_set():
                break
            try:
                due = min(due, self._drain(upstream, upstream in closed))
            finally:
                store.finish(upstream, self.consumer)
        return due

    def _drain(self, upstream: str, closed_now: bool) -> float:
        policy = self.outbox.policy
        store = self.outbox.store
        while not self._stopping.is_set():
            entries = store.claim(upstream, policy.concurrency, policy.visibility, consumer=self.consumer,
                                  ignore_schedule=closed_now)
            if not entries:
                return policy.poll
            closed_now = False
            now = time.time()
            fresh = []
            for entry in entries:
                if now - entry.created > policy.max_age:
                    self._bury(entry, "max_age")
                else:
                    fresh.append(entry)
            if not fresh:
                continue
            if len(fresh) == 1:
                results = [self._replay(fresh[0])]
            else:
                with ThreadPoolExecutor(len(fresh), thread_name_prefix="otel-hardening-outbox-send") as pool:
                    results = list(pool.map(self._replay, fresh))
            wait = self._settle(fresh, results)
            if wait is not None:
                return wait
        return policy.poll

    def _settle(self, entries: list[Entry], results: list[_Result]) -> float | None:
        """Record each result, in order; seconds until the upstream is due again if one failed."""
        store, policy, tel = self.outbox.store, self.outbox.policy, self.outbox.telemetry
        wait: float | None = None
        for entry, result in zip(entries, results, strict=True):
            tel.replayed.add(1, tel.with_attrs(**{"hardening.outbox.outcome": result.outcome}))
            if result.outcome == tm.DELIVERED:
                store.ack(entry, self.consumer)
                continue
            if result.permanent:
                self._bury(entry.failed(result.error, 0.0), _PERMANENT_TEXT)
                continue
            if result.outcome == tm.CIRCUIT_OPEN:  # no I/O happened: not a failed replay
                delay = max(0.05, result.retry_in)
                store.release(replace(entry, next_at=time.time() + delay, last_error=result.error), self.consumer)
            else:
                failed = entry.failed(result.error, 0.0)
                if failed.attempts >= policy.max_replays:
                    self._bury(failed, "max_replays")
                    continue
                cap = min(policy.backoff_max, policy.backoff_initial * 2 ** min(failed.attempts - 1, 30))
                delay = cap * (0.5 + random.random() / 2)  # jittered, never less than half the cap
                store.release(replace(failed, next_at=time.time() + delay), self.consumer)
            wait = delay if wait is None else min(wait, delay)
        if wait is not None:
            self._due[entries[0].upstream] = time.monotonic() + wait
        return wait

    def _bury(self, entry: Entry, reason: str) -> None:
        self.outbox.store.bury(entry, reason, self.consumer)
        tel = self.outbox.telemetry
        tel.dead_lettered.add(1, tel.with_attrs(**{"hardening.outbox.reason": reason}))
        logger.warning("otel_hardening: outbox entry %s for %s dead-lettered (%s) after %d failed replays",
                       entry.id, entry.upstream, reason, entry.attempts)

    def _replay(self, entry: Entry) -> _Result:
        tel = self.outbox.telemetry
        links = []
        if entry.trace_id and entry.span_id:
            with contextlib.suppress(ValueError):
                links.append(Link(SpanContext(int(entry.trace_id, 16), int(entry.span_id, 16), is_remote=True,
                                              trace_flags=TraceFlags(TraceFlags.SAMPLED))))
        attributes = {**tel.attrs, "hardening.outbox.entry_id": entry.id,
                      "hardening.circuit.name": entry.upstream, "http.request.method": entry.method,
                      "hardening.outbox.replay": entry.attempts + 1}
        with tel.tracer.start_as_current_span(tm.REPLAY_SPAN, kind=SpanKind.INTERNAL, links=links,
                                              attributes=attributes, record_exception=False,
                                              set_status_on_exception=False) as span:
            result = self._send(entry)
            span.set_attribute("hardening.outbox.outcome", result.outcome)
            if result.outcome != tm.DELIVERED:
                span.set_status(Status(StatusCode.ERROR, result.error))
            return result

    def _send(self, entry: Entry) -> _Result:
        from otel_hardening.outbox._outbox import EXTENSION, REPLAY

        try:
            request = httpx.Request(entry.method, entry.url, headers=list(entry.headers), content=entry.body)
            hook = self.outbox.before_replay
            if hook is not None:
                request = hook(request)
            request.extensions = {**request.extensions, EXTENSION: REPLAY}
            client = self.outbox.replay_client()
        except Exception as exc:
            log_once(f"outbox:before_replay:{self.outbox.name}", logging.ERROR,
                     "otel_hardening: outbox before_replay failed for an entry to %s (%s)",
                     entry.upstream, type(exc).__name__)
            return _Result(tm.FAILED, f"before_replay raised {type(exc).__name__}")
        try:
            response = client.send(request)
            response.close()
        except CircuitOpenError as exc:
            return _Result(tm.CIRCUIT_OPEN, "circuit_open", retry_in=exc.retry_in)
        except Exception as exc:
            return _Result(tm.FAILED, pol.error_type(exc))
        status = response.status_code
        if status < 400:
            return _Result(tm.DELIVERED)
        error = f"HTTP {status}"
        # 4xx other than "not now" is the upstream's no: another replay would get the same answer
        permanent = status < 500 and status not in (408, 425, 429)
        return _Result(tm.FAILED, error, permanent=permanent)

"""The logic of one logical request, written once for the sync and async clients.

send.py only loops: ``before_attempt()`` (may reject), send one attempt through the client's own
step, then ``on_response()`` / ``on_error()`` say whether and how long to wait before the next one.

The INTERNAL span ``hardening.request`` is started lazily, the first time hardening acts on a
request (a retry is scheduled or refused, the circuit rejects it or changes state), with its start
time set to the start of the logical request. A request that succeeds first time therefore costs
no extra span; its single CLIENT span is linked from the INTERNAL span when there is one.
"""

from __future__ import annotations

import math
import time
import weakref
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from typing import Any, NoReturn

import httpx
from opentelemetry import context, trace
from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from otel_hardening._env import check_seconds
from otel_hardening._redaction import needs_redaction, redact_url
from otel_hardening.config import MAX_DEADLINE, BudgetPolicy, CircuitPolicy, RetryPolicy, SlowRequestPolicy
from otel_hardening.http import outcomes
from otel_hardening.http import policy as pol
from otel_hardening.http import telemetry as tm
from otel_hardening.http.circuit import CLOSED_PERMIT, OPEN, Circuit, Permit
from otel_hardening.http.deadline import ATTEMPT
from otel_hardening.http.errors import CircuitOpenError
from otel_hardening.http.phases import AttemptPhases
from otel_hardening.http.registry import REGISTRY, Upstream
from otel_hardening.http.slow import SlowRequests
from otel_hardening.http.urls import parts

_monotonic = time.monotonic  # one lookup less on every call's end
_URL_KEYS = ("url.full", "http.url")
_CACHED_UPSTREAMS = 256
_OPTION_KEYS = frozenset({"retry", "max_attempts", "idempotent", "deadline"})
_SPAN_KEY = next(iter(trace.set_span_in_context(trace.INVALID_SPAN, context.Context())))
"""The context key of the current span (the API's own, found through its public setter)."""
_RUNTIME = getattr(context, "_RUNTIME_CONTEXT", None)


def _context_variable(runtime: object) -> ContextVar[context.Context] | None:
    """The variable behind ``opentelemetry.context.get_current()`` on the API's default runtime context.

    Read directly, the current context costs one C call instead of two Python ones, twice per attempt
    (``enter_attempt``, ``attempt_started``). Only while that runtime is the API's: another one (set by
    ``OTEL_PYTHON_CONTEXT``, or swapped in later) is asked through ``get_current()``."""
    variable = getattr(runtime, "_current_context", None)
    if type(runtime) is ContextVarsRuntimeContext and isinstance(variable, ContextVar):
        return variable
    return None


_CONTEXT = _context_variable(_RUNTIME)


# Bound once: a method of an imported object is looked up anew on each call (no cache on Python 3.11)
_enter_attempt = ATTEMPT.set
_leave_attempt = ATTEMPT.reset
_SPAN_TYPES: set[type] = set()
"""Classes of spans seen in a context and checked to be ``trace.Span`` (an ABC check costs ~200 ns)."""


class Engine:
    """Policies, telemetry and the on/off switch of the clients one ``harden()`` or ``install()`` call hardened."""

    def __init__(
        self,
        retry: RetryPolicy,
        circuit: CircuitPolicy,
        budget: BudgetPolicy,
        telemetry: tm.Telemetry,
        slow: SlowRequestPolicy | None = None,
        logger_provider: Any = None,
    ) -> None:
        self.retry = retry
        self.circuit = circuit
        self.budget = budget
        self.telemetry = telemetry
        self.active = True
        """False once ``uninstall()`` turned this engine off: its clients' calls go unhardened."""
        self.slow = SlowRequests(slow or SlowRequestPolicy(), logger_provider)
        self.slow_after: float | None = self.slow.shortest if self.slow.shortest < math.inf else None
        """No call shorter than this is slow; None: slow detection is off (a call's end reads no clock)."""
        self.clients: weakref.WeakSet[httpx.Client | httpx.AsyncClient] = weakref.WeakSet()
        """The clients this engine hardened (``uninstall()`` gives them their own step back)."""
        self._upstreams: dict[tuple[str, str, int | None], Upstream] = {}
        self._generation = -1

    def begin(self, request: httpx.Request) -> Call:
        url = request.url
        scheme, _, host, port, _, query, fragment = parts(url)
        key = (scheme, host, port)
        if self._generation != REGISTRY.generation:
            self._upstreams = {}
            self._generation = REGISTRY.generation
        upstream = self._upstreams.get(key)
        if upstream is None:
            upstream = REGISTRY.get(url, self.circuit, self.budget, self.telemetry)
            if len(self._upstreams) >= _CACHED_UPSTREAMS:
                self._upstreams = {}
            self._upstreams[key] = upstream
        # the URL a span shows is redacted when it has a secret-looking query or a fragment
        return Call(self, request, upstream, bool(query or fragment) and needs_redaction(query, fragment))


class Call(AttemptPhases):
    """One logical request: its attempts, waits, circuit permits and telemetry."""

    # Slots, each set in __init__: on Python 3.11 an attribute read through an instance from its class
    # (a class-level default) takes the interpreter's slow generic path; a slot read is specialized.
    __slots__ = (
        "_delays", "_last_reason", "_outer_context", "_redacted_url", "_scope", "_spanned", "_token",
        "attempt", "attempt_at", "can_retry", "deadline", "deadline_at", "denied", "engine",
        "finished", "first_attempt_span", "max_attempts", "permit", "redact", "request", "retry", "span", "start",
        "upstream",
    )

    def __init__(self, engine: Engine, request: httpx.Request, upstream: Upstream, redact: bool) -> None:
        self.request = request
        self.redact = redact
        """The URL the attempts' spans show must be redacted (``_redaction.needs_redaction``)."""
        self.upstream = upstream
        self.engine = engine
        retry = engine.retry
        self.retry = retry
        self.max_attempts = retry.max_attempts
        self.deadline = retry.deadline
        self.attempt = 0
        self.permit: Permit | None = None
        self.span: trace.Span | None = None
        self.first_attempt_span: trace.Span | None = None
        self.denied: str | None = None
        self.finished = False
        self.deadline_at: float | None = None
        self._delays: Iterator[float] | None = None
        self._redacted_url: str | None = None
        self._spanned = 0
        self._outer_context: context.Context | None = None
        self._token: Any = None
        self._scope: Any = None
        self._last_reason: str | None = None
        self.attempt_at: float | None = None
        """When the current attempt started, if it is a network quality sample (quality.py), else None."""
        self.queued_at = self._attempt_start = self._dequeued = 0.0  # AttemptPhases' clocks
        self._queue = self._connect = self._sending = self.backoff = 0.0
        idempotent = (retry.retry_non_idempotent or request.method in pol.IDEMPOTENT_METHODS
                      or "idempotency-key" in request.headers)
        enabled = True
        if "hardening" in request.extensions:
            options = pol.request_options(request.extensions)
            if options is not None:
                enabled, idempotent = self._apply(options, enabled, idempotent)
        self.can_retry = enabled and self.max_attempts > 1 and idempotent and pol.is_replayable(request)
        self.start = now = _monotonic()
        if self.can_retry:
            # only a call that may be retried has a deadline (deadline.py): the others keep their timeouts
            self.deadline_at = now + self.deadline
        upstream.last_used = now
        upstream.budget.deposit(now)

    def _apply(self, options: Mapping[str, object], enabled: bool, idempotent: bool) -> tuple[bool, bool]:
        unknown = set(options) - _OPTION_KEYS
        if unknown:
            raise ValueError(f'unknown request.extensions["hardening"] keys {sorted(unknown)}; '
                             f"accepted: {sorted(_OPTION_KEYS)}")
        retry = options.get("retry", enabled)
        max_attempts = options.get("max_attempts", self.max_attempts)
        idem = options.get("idempotent", idempotent)
        deadline = options.get("deadline", self.deadline)
        if not isinstance(retry, bool) or not isinstance(idem, bool):
            raise TypeError('request.extensions["hardening"]: "retry" and "idempotent" must be bool')
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise ValueError('request.extensions["hardening"]["max_attempts"] must be an int >= 1')
        self.max_attempts = max_attempts
        self.deadline = check_seconds('request.extensions["hardening"]["deadline"]', deadline,  # type: ignore[arg-type]
                                      MAX_DEADLINE)
        return retry, idem

    # --- before an attempt ------------------------------------------------------------------
    def before_attempt(self) -> bool:
        """Take a circuit permit and prepare the request; False when a retry is refused a permit.

        A first attempt without a permit raises CircuitOpenError (no I/O done). A retry without one
        (the circuit opened while this call waited) ends the call: the caller gets the last real
        response or error, not a CircuitOpenError that would hide it.
        """
        circuit = self.upstream.circuit
        permit = CLOSED_PERMIT if circuit.calm else self._acquire(circuit)  # calm: no call, no list
        if permit is None:
            return False
        self.permit = permit
        self.attempt += 1
        recent = self.upstream.recent
        if self.attempt > 1:  # is the attempt a network quality sample? (quality.py)
            self.attempt_at = recent.sample(time.monotonic())
        elif self.start >= recent.due:  # the first starts with the call: recent.sample() inlined, no clock read
            recent.due = self.start + recent.spacing
            self.attempt_at = self.start
        return True

    def _acquire(self, circuit: Circuit) -> Permit | None:
        """``circuit.acquire()`` with its consequences: state events, and for a refused attempt the call's
        end (None: a retry refused) or ``CircuitOpenError`` (a first attempt)."""
        transitions: list[tuple[str, str]] = []
        permit = circuit.acquire(transitions)
        if transitions:
            self._state_events(transitions)
        if permit is not None:
            return permit
        if self.attempt == 0 and not transitions and not self.upstream.trace_rejection(self.start):
            self._reject_untraced()
        retry_in = circuit.seconds_until_trial()
        self.denied = "circuit_open"
        self._ensure_span().add_event(tm.EVENT_RETRY_DENIED, {"hardening.retry.reason": "circuit_open"})
        if self.attempt > 0:
            self._finish(outcomes.FAILURE_AFTER_RETRY, self._last_reason)
            return None
        self._finish(outcomes.REJECTED_CIRCUIT_OPEN)
        raise CircuitOpenError(self.upstream.name, retry_in, request=self.request)

    def _reject_untraced(self) -> NoReturn:
        """A rejection like one already traced this second: counted, and an event on the caller's span.

        Rejections are the common case during an outage; a span each would cost more than a request.
        """
        self.finished = True
        upstream = self.upstream
        upstream.tally.add(outcomes.REJECTED_CIRCUIT_OPEN, 0)
        caller = trace.get_current_span()
        if caller.is_recording():
            caller.add_event(tm.EVENT_CIRCUIT_REJECTED, upstream.rejected_event_attrs)
        raise CircuitOpenError(upstream.name, upstream.circuit.seconds_until_trial(), request=self.request)

    @property
    def telemetry(self) -> tm.Telemetry:
        return self.engine.telemetry

    def attempt_started(self) -> None:
        """The attempt entered the connection pool (deadline.py), inside its CLIENT span if there is one."""
        attempt = self.attempt
        if self._spanned == attempt:
            return
        self._spanned = attempt
        if _CONTEXT is not None and context._RUNTIME_CONTEXT is _RUNTIME:
            current = _CONTEXT.get()  # context.get_current() (see _context_variable)
        else:
            current = context.get_current()
        outer = self._outer_context
        if current is outer or outer is None:
            return  # no CLIENT span: opentelemetry-instrumentation-httpx is not active
        span: Any = current.get(_SPAN_KEY)  # trace.get_current_span(current), without its ABC isinstance check
        if span is None or span is outer.get(_SPAN_KEY):
            return  # no CLIENT span: opentelemetry-instrumentation-httpx is not active
        if type(span) not in _SPAN_TYPES:
            if not isinstance(span, trace.Span):
                return
            _SPAN_TYPES.add(type(span))
        if not span.is_recording():
            return
        if attempt > 1:
            span.set_attribute("http.request.resend_count", attempt - 1)
        if self.redact:
            redacted = self._redacted_url
            if redacted is None:
                redacted = self._redacted_url = redact_url(self.request.url)
            # the instrumentation reports the URL as url.full, http.url (old semconv) or both
            present = getattr(span, "attributes", None) or {}
            for key in [k for k in _URL_KEYS if k in present] or ["url.full"]:
                span.set_attribute(key, redacted)
        if attempt == 1:
            self.first_attempt_span = span

    # --- after an attempt -------------------------------------------------------------------
    def on_response(self, response: httpx.Response) -> float | None:
        """Seconds to wait before the next attempt, or None: the response is the answer."""
        status = response.status_code
        assert self.permit is not None
        failed = status >= 500 or status == 429  # counts against the circuit; other 4xx never do
        end = None  # the attempt's end, read once for the quality sample, the slow check and the backoff
        if self.attempt_at is not None:
            end = _monotonic()
            self.upstream.recent.add(self.attempt_at, failed, end)
        circuit = self.upstream.circuit
        if failed or self.permit is not CLOSED_PERMIT or not circuit.calm:  # else nothing to record
            transitions: list[tuple[str, str]] = []
            if failed:
                circuit.record_failure(self.permit, str(status), transitions)
            else:
                circuit.record_success(self.permit, transitions)
            if transitions:
                self._state_events(transitions)
        if status not in self.retry.retry_statuses:
            if failed:
                self._finish(self._failed_outcome(), status, end)
            else:
                self._finish(outcomes.SUCCESS if self.attempt == 1 else outcomes.SUCCESS_AFTER_RETRY, status, end)
            return None
        retry_after = None
        if status in pol.RETRY_AFTER_STATUSES:
            retry_after = pol.parse_retry_after(response.headers.get("retry-after"))
        delay = self._next_delay(str(status), retry_after, end)
        if delay is None:
            self._finish(self._failed_outcome(), status, end)
        return delay

    def on_error(self, exc: Exception) -> float | None:
        """Seconds to wait before the next attempt, or None: ``exc`` is the answer."""
        assert self.permit is not None
        end = None
        if pol.is_failure_error(exc):
            if self.attempt_at is not None:
                end = _monotonic()
                self.upstream.recent.add_error(self.attempt_at, exc, end)
            transitions: list[tuple[str, str]] = []
            self.upstream.circuit.record_failure(self.permit, pol.error_type(exc), transitions)
            self._state_events(transitions)
        else:
            self.upstream.circuit.release(self.permit)
        delay = self._next_delay(pol.error_type(exc), None, end) if pol.is_retryable_error(exc) else None
        if delay is None:
            if isinstance(exc, httpx.PoolTimeout):
                end = _monotonic()
                self.end_attempt(end)  # its wait is a time_in_queue sample (phases.py)
                self._finish(outcomes.POOL_TIMEOUT, exc, end)
            else:
                self._finish(self._failed_outcome(), exc, end)
        return delay

    def abandon(self) -> None:
        """The call ended without an outcome (KeyboardInterrupt, task cancellation, or this layer's own
        bug): the permit goes back and the span ends. Does nothing once the call has finished."""
        if self.finished:
            return
        self.finished = True
        if self.permit is not None:
            self.upstream.circuit.release(self.permit)
            self.permit = None
        if self.span is not None:
            self.span.set_attribute("hardening.attempts", self.attempt)
            self.span.end()

    def _next_delay(self, reason: str, retry_after: float | None, end: float | None) -> float | None:
        """Seconds to wait before the next attempt, or None; ``end``: when the attempt ended, if known."""
        if not self.can_retry:
            return None
        if self.attempt >= self.max_attempts:
            if self.attempt > 1:
                self._deny("max_attempts", reason)
            return None
        if retry_after is not None and retry_after > self.retry.retry_after_max:
            self._deny("retry_after_too_long", reason)
            return None
        if retry_after is not None:
            delay = retry_after
        else:
            if self._delays is None:
                self._delays = pol.backoff_delays(self.retry.backoff_initial, self.retry.backoff_max)
            delay = next(self._delays)
        now = _monotonic() if end is None else end
        if delay >= self.deadline - (now - self.start):
            self._deny("deadline", reason)
            return None
        circuit = self.upstream.circuit
        if circuit.state == OPEN and circuit.seconds_until_trial() > delay:
            self._deny("circuit_open", reason)
            return None
        if not self.upstream.budget.try_withdraw():
            self._deny("retry_budget", reason)
            return None
        self._ensure_span().add_event(tm.EVENT_RETRY, {
            "hardening.attempt": self.attempt,
            "hardening.retry.delay": delay,
            "hardening.retry.reason": reason,
        })
        self.telemetry.retries.add(1, self.upstream.retry_attrs(reason))
        self.telemetry.retry_delay.record(delay, self.upstream.base_attrs)
        self.end_attempt(now, now + delay)
        self.backoff += delay
        self._last_reason = reason
        return delay

    def _deny(self, why: str, reason: str) -> None:
        self.denied = why
        self._ensure_span().add_event(tm.EVENT_RETRY_DENIED, {
            "hardening.attempt": self.attempt,
            "hardening.retry.reason": reason,
            "hardening.retry.denied": why,
        })

    def _failed_outcome(self) -> str:
        if self.denied == "retry_budget":
            return outcomes.REJECTED_RETRY_BUDGET
        return outcomes.FAILURE if self.attempt <= 1 else outcomes.FAILURE_AFTER_RETRY

    # --- telemetry --------------------------------------------------------------------------
    def _state_events(self, transitions: list[tuple[str, str]]) -> None:
        for old, new in transitions:
            self._ensure_span().add_event(tm.EVENT_CIRCUIT_STATE, {
                "hardening.circuit.name": self.upstream.name,
                "hardening.circuit.previous_state": old,
                "hardening.circuit.state": new,
            })

    def trace_slow(self) -> trace.Span:
        """The call was slow: its ``hardening.request`` span (made now if hardening had not acted on it)
        says so, for trace search (``hardening.slow=true``) and the collector's tail sampling."""
        span = self._ensure_span()
        span.set_attribute("hardening.slow", True)
        return span

    def _ensure_span(self) -> trace.Span:
        if self.span is None:
            first = self.first_attempt_span
            links = [Link(first.get_span_context())] if first is not None else None
            # the logical request's start, on the wall clock the SDK uses (measured on the monotonic one)
            start_ns = time.time_ns() - int((time.monotonic() - self.start) * 1e9)
            self.span = self.telemetry.tracer.start_span(
                tm.SPAN_NAME, kind=SpanKind.INTERNAL, start_time=start_ns, links=links,
                attributes=self.upstream.span_attributes(self.request.method),
            )
        return self.span

    # --- the attempt's context (deadline.py reads it: the deadline, and the attempt's start) -----
    def enter_attempt(self) -> None:
        """Run the next attempt: inside the INTERNAL span once there is one, and as ``ATTEMPT``.
        (Not ``__enter__``: a ``with`` statement calls its methods through C, a plain call is inlined.)

        The request itself carries nothing of this: its extensions and timeouts stay the caller's.
        """
        span = self.span
        if span is not None:
            self._scope = trace.use_span(span, end_on_exit=False)
            self._scope.__enter__()
        if _CONTEXT is not None and context._RUNTIME_CONTEXT is _RUNTIME:
            self._outer_context = _CONTEXT.get()  # context.get_current() (see _context_variable)
        else:
            self._outer_context = context.get_current()
        self._token = _enter_attempt(self)

    def exit_attempt(self) -> None:
        _leave_attempt(self._token)
        scope = self._scope
        if scope is not None:
            self._scope = None
            scope.__exit__(None, None, None)

    def _finish(self, outcome: str, answer: int | str | Exception | None = None, end: float | None = None) -> None:
        """End the call with ``outcome``; ``answer``: the last status, error (or its type), if any; ``end``:
        when its last attempt ended, if the caller read the clock already."""
        self.finished = True
        self.permit = None
        acted_on = self.span is not None
        slow_after = self.engine.slow_after
        if slow_after is not None:
            if end is None:
                end = _monotonic()
            if end - self.start > slow_after:
                self.engine.slow.check(self, outcome, answer, end)  # a logged slow call gets a span
        span = self.span
        if span is None:
            self.upstream.tally.add(outcome, self.attempt)
            return
        if acted_on:
            self.upstream.finished_acted_on(outcome, self.attempt)
        else:
            self.upstream.tally.add(outcome, self.attempt)
        span.set_attribute("hardening.attempts", self.attempt)
        # Trace search backends match tags exactly (Jaeger): a bool to find "retried" by.
        span.set_attribute("hardening.retried", self.attempt > 1)
        span.set_attribute("hardening.outcome", outcome)
        span.set_attribute("hardening.circuit.state", self.upstream.circuit.state)
        if outcome in outcomes.FAILED_OUTCOMES:
            span.set_status(Status(StatusCode.ERROR, outcome))
        span.end()

"""Slow-request log records: one ``hardening.slow_request`` record per logical call slower than its threshold.

The call's duration runs from its start to its answer: every attempt, pool wait and backoff included
(the body is the caller's to read, after). The engine compares it with the shortest threshold in
the policy, one subtraction per call; everything here runs only for a call past it.

Records are rate limited per upstream series (a named upstream, or ``_other`` for all the rest) by a
token bucket, so a slow upstream, or thousands of them, cannot flood the logs;
``hardening.http.client.slow_requests`` counts every slow call, logged or not.
"""

from __future__ import annotations

import logging
import math
import threading
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry._logs import LogRecord, SeverityNumber, get_logger_provider

from otel_hardening._logging import log_once
from otel_hardening._redaction import redact_url
from otel_hardening._version import __version__
from otel_hardening.config import SlowRequestPolicy
from otel_hardening.http import policy as pol
from otel_hardening.http.telemetry import SCOPE

if TYPE_CHECKING:
    from otel_hardening.http.engine import Call
    from otel_hardening.http.registry import Upstream

EVENT = "hardening.slow_request"
_CACHED_THRESHOLDS = 1024


class SlowRequests:
    """The slow-request policy of one engine: thresholds per upstream, and the records."""

    def __init__(self, policy: SlowRequestPolicy, logger_provider: Any = None) -> None:
        self.policy = policy
        self.logger_provider = logger_provider
        thresholds = [t for t in (policy.threshold, *policy.upstreams.values()) if t is not None]
        self.shortest = min(thresholds, default=math.inf)
        """No call shorter than this is slow for any upstream: the engine's one comparison per call."""
        self._thresholds: dict[str, float | None] = {}
        self._logger: Any = None

    def threshold(self, upstream: Upstream) -> float | None:
        found = self._thresholds.get(upstream.name, self)
        if found is self:
            if len(self._thresholds) >= _CACHED_THRESHOLDS:
                self._thresholds = {}
            found = self._thresholds[upstream.name] = self.policy.threshold_for(upstream.host, upstream.port)
        return found  # type: ignore[return-value]

    def check(self, call: Call, outcome: str, answer: int | str | Exception | None, end: float) -> None:
        """Count and (rate permitting) log ``call`` if it is slow for its upstream. Never raises."""
        try:
            threshold = self.threshold(call.upstream)
            if threshold is None or end - call.start <= threshold:
                return
            call.upstream.tally.add_slow()
            if _BUCKETS.take(call.upstream.series, self.policy, end):
                call.end_attempt(end, end)
                self._emit(call, outcome, answer, end - call.start, threshold, call.trace_slow())
            elif call.span is not None:
                call.span.set_attribute("hardening.slow", True)
        except Exception:
            log_once("slow_request", logging.ERROR,
                     "otel_hardening: a slow-request record could not be made; slow requests are not logged",
                     exc_info=True)

    def _emit(self, call: Call, outcome: str, answer: int | str | Exception | None, duration: float,
              threshold: float, span: trace.Span) -> None:
        request, upstream = call.request, call.upstream
        url = redact_url(request.url)
        attrs: dict[str, Any] = {
            "event.name": EVENT,
            "url.full": url,
            "http.request.method": request.method,
            "server.address": upstream.host,
            "server.port": upstream.port,
            "hardening.outcome": outcome,
            "hardening.attempts": call.attempt,
            "hardening.duration": duration,
            "hardening.slow_request.threshold": threshold,
            **call.phase_attributes(),
        }
        shown = _answer(answer, attrs)
        attempts = f"{call.attempt} attempt{'' if call.attempt == 1 else 's'}"
        body = f"slow request {request.method} {url}: {duration:.1f} s (threshold {threshold:g} s), {attempts}"
        ctx = span.get_span_context()
        valid = ctx.is_valid
        record = LogRecord(
            trace_id=ctx.trace_id if valid else None,
            span_id=ctx.span_id if valid else None,
            trace_flags=ctx.trace_flags if valid else None,
            severity_number=SeverityNumber.WARN,
            severity_text="WARN",
            body=f"{body}, {shown}" if shown else body,
            attributes=attrs,
        )
        if self._logger is None:
            provider = self.logger_provider if self.logger_provider is not None else get_logger_provider()
            self._logger = provider.get_logger(SCOPE, __version__)
        self._logger.emit(record)


def _answer(answer: int | str | Exception | None, attrs: dict[str, Any]) -> str:
    """Put the call's last status (or error type) into ``attrs``; it as the body shows it."""
    if isinstance(answer, Exception):
        answer = pol.error_type(answer)
    if isinstance(answer, str) and answer.isascii() and answer.isdigit():
        answer = int(answer)  # a retry reason is a status code as text
    if isinstance(answer, int):
        attrs["http.response.status_code"] = answer
        return str(answer)
    if answer:
        attrs["error.type"] = answer
        return answer
    return ""


class _Buckets:
    """A token bucket per upstream series: ``burst`` records at once, then ``logs_per_minute``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}
        """series name -> (tokens, when they were counted); bounded like the series themselves."""

    def take(self, series: str, policy: SlowRequestPolicy, now: float) -> bool:
        with self._lock:
            tokens, then = self._buckets.get(series, (float(policy.burst), now))
            tokens = min(float(policy.burst), tokens + (now - then) * policy.logs_per_minute / 60.0)
            allowed = tokens >= 1.0
            self._buckets[series] = (tokens - 1.0 if allowed else tokens, now)
            return allowed

    def clear(self) -> None:
        with self._lock:
            self._buckets.clear()


_BUCKETS = _Buckets()


def reset() -> None:
    """Forget the rate limits' state (tests: each starts with full buckets)."""
    _BUCKETS.clear()

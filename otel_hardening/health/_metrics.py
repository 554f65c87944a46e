"""Health as telemetry: two one-hot gauges and a log record on every change of the process status.

OTel API only; the application owns the SDK. Callbacks read the latest report and never raise.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
from opentelemetry.trace import NonRecordingSpan, SpanContext

from otel_hardening._logging import log_once
from otel_hardening.health._model import HealthReport, Status

SCOPE = "otel_hardening.health"
STATE = "hardening.health.state"
COMPONENT = "hardening.health.component"
PREVIOUS = "hardening.health.previous_state"
REASONS = "hardening.health.reasons"
READY = "hardening.health.ready"
EVENT_NAME = "hardening.health.change"
RECHECK_EVENT_NAME = "hardening.health.recheck"


class HealthMetrics:
    """``hardening.health.status`` and ``hardening.health.component.status``: one series per state,
    1 for the current state and 0 for the others, so ``max by (state)`` or ``== 1`` selects it."""

    def __init__(self, latest: Callable[[], HealthReport | None],
                 meter_provider: MeterProvider | None = None) -> None:
        self._latest = latest
        provider = meter_provider or metrics.get_meter_provider()
        meter = provider.get_meter(SCOPE)
        meter.create_observable_gauge(
            "hardening.health.status", callbacks=[self._status], unit="",
            description="Process health: 1 for the current state (healthy, degraded, critical), 0 otherwise")
        meter.create_observable_gauge(
            "hardening.health.ready", callbacks=[self._ready], unit="",
            description="Readiness: 1 when this process can serve, 0 when its own resources, its "
                        "samplers or a required dependency stop it")
        meter.create_observable_gauge(
            "hardening.health.component.status", callbacks=[self._components], unit="",
            description="Health of one component:measurement: 1 for its current state, 0 otherwise")

    def _report(self) -> HealthReport | None:
        try:
            return self._latest()
        except Exception:
            log_once("health:metrics", logging.WARNING, "otel_hardening: health gauges could not be read",
                     exc_info=True)
            return None

    def _status(self, options: CallbackOptions) -> Iterable[Observation]:
        report = self._report()
        if report is None:
            return []
        return [Observation(int(s is report.status), {STATE: s.value}) for s in Status]

    def _ready(self, options: CallbackOptions) -> Iterable[Observation]:
        report = self._report()
        return [] if report is None else [Observation(int(report.ready))]

    def _components(self, options: CallbackOptions) -> Iterable[Observation]:
        report = self._report()
        if report is None:
            return []
        return [Observation(int(s is c.status), {COMPONENT: c.name, STATE: s.value})
                for c in report.components for s in Status]


def emit_change(logger_provider: object | None, previous: Status | None, report: HealthReport,
                recheck: bool = False, cause: SpanContext | None = None) -> None:
    """An OTel log record (event ``hardening.health.change``) naming the new state and its reasons,
    and the same as a span event when the change is detected inside a recording span. With
    ``recheck`` the record re-sends the unchanged state (event ``hardening.health.recheck``). With
    ``cause`` (the request that moved a circuit) the record carries that request's trace and span id."""
    try:
        from opentelemetry import _logs

        provider = logger_provider if logger_provider is not None else _logs.get_logger_provider()
        otel_logger = provider.get_logger(SCOPE)  # type: ignore[attr-defined]
        severity = {Status.HEALTHY: _logs.SeverityNumber.INFO, Status.DEGRADED: _logs.SeverityNumber.WARN,
                    Status.CRITICAL: _logs.SeverityNumber.ERROR}[report.status]
        reasons = list(report.reasons)
        was = previous.value if previous is not None else "unknown"
        body = (f"health still {report.status.value}" if recheck else f"health {was} -> {report.status.value}")
        body += "" if report.ready else " (not ready)"
        if reasons:
            body += ": " + "; ".join(reasons)
        span = trace.get_current_span()
        if span.is_recording() and not recheck:  # evaluated on demand inside a request (the sampler thread has no span)
            span.add_event(EVENT_NAME, {STATE: report.status.value, PREVIOUS: was, REASONS: reasons,
                                        READY: report.ready})
        otel_logger.emit(
            severity_number=severity,
            severity_text=severity.name,
            body=body,
            attributes={STATE: report.status.value, PREVIOUS: was, REASONS: reasons, READY: report.ready},
            event_name=RECHECK_EVENT_NAME if recheck else EVENT_NAME,
            context=trace.set_span_in_context(NonRecordingSpan(cause)) if cause is not None else None,
        )
    except Exception:
        log_once("health:log-record", logging.WARNING,
                 "otel_hardening: could not emit the health change log record", exc_info=True)

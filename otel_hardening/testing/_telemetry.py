"""In-memory OpenTelemetry providers for tests, with helpers that read what the hardening layer emitted."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import httpx
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_hardening.config import BudgetPolicy, CircuitPolicy, HardeningConfig, RetryPolicy, SlowRequestPolicy

ClientT = TypeVar("ClientT", httpx.Client, httpx.AsyncClient)

REQUEST_SPAN = "hardening.request"
STATE_CHANGE_EVENT = "hardening.circuit.state_change"


def _int(value: object) -> int:
    return value if isinstance(value, int) else 1


class HardeningTelemetry:
    """Tracer, meter and logger providers that keep everything in memory.

    Hand them to the layer with :meth:`harden` / :meth:`install` (or pass ``tracer_provider`` and
    ``meter_provider`` yourself), then assert on :meth:`retried_requests`, :meth:`total`, ... .
    Spans are exported synchronously; metrics are collected when read.
    """

    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.log_records = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
        self.logger_provider = LoggerProvider()
        self.logger_provider.add_log_record_processor(SimpleLogRecordProcessor(self.log_records))

    # -- turning the layer on with these providers ----------------------------------------------

    def harden(self, client: ClientT, *, retry: RetryPolicy | None = None,
               circuit: CircuitPolicy | None = None, budget: BudgetPolicy | None = None,
               slow: SlowRequestPolicy | None = None) -> ClientT:
        """:func:`otel_hardening.harden` with these providers."""
        from otel_hardening import harden

        return harden(client, retry=retry, circuit=circuit, budget=budget, slow=slow,
                      tracer_provider=self.tracer_provider, meter_provider=self.meter_provider,
                      logger_provider=self.logger_provider)

    @contextmanager
    def install(self, config: HardeningConfig | None = None) -> Iterator[HardeningTelemetry]:
        """:func:`otel_hardening.install` with these providers, undone on exit."""
        import otel_hardening

        otel_hardening.install(config, tracer_provider=self.tracer_provider,
                               meter_provider=self.meter_provider, logger_provider=self.logger_provider)
        try:
            yield self
        finally:
            otel_hardening.uninstall()

    # -- spans -----------------------------------------------------------------------------------

    def finished(self, name: str | None = None) -> list[ReadableSpan]:
        """Finished spans, oldest first (only those called ``name`` if given)."""
        return [s for s in self.spans.get_finished_spans() if name is None or s.name == name]

    def retried_requests(self) -> list[ReadableSpan]:
        """``hardening.request`` spans of logical requests that made more than one attempt."""
        return [s for s in self.finished(REQUEST_SPAN) if _int((s.attributes or {}).get("hardening.attempts")) > 1]

    def requests_with_outcome(self, outcome: str) -> list[ReadableSpan]:
        """``hardening.request`` spans whose ``hardening.outcome`` is ``outcome`` (e.g. ``rejected_circuit_open``:
        only the first rejection of an upstream each second has a span; ``calls(outcome)`` counts them all)."""
        return [s for s in self.finished(REQUEST_SPAN) if (s.attributes or {}).get("hardening.outcome") == outcome]

    def circuit_transitions(self) -> list[tuple[str, str, str]]:
        """``(circuit, previous state, new state)`` of every state change recorded on a span, in order."""
        out = []
        for span in self.finished(REQUEST_SPAN):
            for event in span.events:
                if event.name == STATE_CHANGE_EVENT:
                    a = event.attributes or {}
                    out.append((str(a.get("hardening.circuit.name")), str(a.get("hardening.circuit.previous_state")),
                                str(a.get("hardening.circuit.state"))))
        return out

    # -- metrics ---------------------------------------------------------------------------------

    def points(self, metric: str) -> list[tuple[dict[str, Any], Any]]:
        """(attributes, value) of every data point of ``metric`` now; histograms give the point itself."""
        data = self.reader.get_metrics_data()
        out: list[tuple[dict[str, Any], Any]] = []
        for rm in data.resource_metrics if data else []:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name == metric:
                        for p in m.data.data_points:
                            out.append((dict(p.attributes or {}), getattr(p, "value", p)))
        return out

    def total(self, metric: str, **attrs: Any) -> float:
        """Sum of the points of a counter or gauge whose attributes match ``attrs``:
        ``total("hardening.http.client.calls", **{"hardening.outcome": "success"})``."""
        return float(sum(v for a, v in self.points(metric) if all(a.get(k) == w for k, w in attrs.items())))

    def calls(self, outcome: str | None = None) -> float:
        """Logical calls finished (``hardening.http.client.calls``), of one outcome if given."""
        if outcome is None:
            return self.total("hardening.http.client.calls")
        return self.total("hardening.http.client.calls", **{"hardening.outcome": outcome})

    # -- logs ------------------------------------------------------------------------------------

    def logs(self) -> list[ReadableLogRecord]:
        """OTel log records emitted through the logger provider (``hardening.leak.report``, health changes,
        ``hardening.slow_request``)."""
        return list(self.log_records.get_finished_logs())

    # -- lifecycle -------------------------------------------------------------------------------

    def clear(self) -> None:
        """Forget the spans and log records captured so far (metrics are cumulative)."""
        self.spans.clear()
        self.log_records.clear()

    def shutdown(self) -> None:
        self.meter_provider.shutdown()
        self.tracer_provider.shutdown()
        self.logger_provider.shutdown()

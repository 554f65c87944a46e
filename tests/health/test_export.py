"""Telemetry export health from the OTel SDK's own reports, with real exporters and processors."""

from __future__ import annotations

import logging

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_hardening.health import HealthConfig, Status
from otel_hardening.health._export import ExportHealth, redact_message, signal_of
from otel_hardening.testing import closed_port
from tests.health.conftest import FakeClock


def watching(clock: FakeClock, window: float = 60.0) -> ExportHealth:
    handler = ExportHealth(HealthConfig(window=window), clock)
    handler.attach()
    return handler


def test_otlp_exporter_to_a_closed_port_is_degraded(clock: FakeClock) -> None:
    handler = watching(clock)
    secret_endpoint = f"http://user:pa55@127.0.0.1:{closed_port()}/v1/traces"
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=secret_endpoint, timeout=0.5)))
    try:
        assert handler.components(clock())[0].status is Status.HEALTHY
        provider.get_tracer("t").start_span("work").end()
        provider.force_flush()
        comp = handler.components(clock())[0]
        assert comp.name == "telemetry:export" and comp.status is Status.DEGRADED
        assert handler.failures >= 1 and "Failed to export" in comp.reason
        assert "pa55" not in comp.reason and "user:" not in comp.reason  # formatted, and redacted
        clock.advance(61)
        assert handler.components(clock())[0].status is Status.HEALTHY  # outside the window again
    finally:
        handler.detach()
        provider.shutdown()


def test_dropped_spans_from_a_full_queue_are_degraded(clock: FakeClock) -> None:
    handler = watching(clock)
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(InMemorySpanExporter(), max_queue_size=2,
                                                   max_export_batch_size=2, schedule_delay_millis=60_000))
    try:
        for _ in range(5):
            provider.get_tracer("t").start_span("work").end()
        comp = handler.components(clock())[0]
        assert comp.status is Status.DEGRADED and handler.dropped >= 1
        assert "drop" in comp.reason
    finally:
        handler.detach()
        provider.shutdown()


def test_healthy_export_and_unrelated_warnings_are_ignored(clock: FakeClock) -> None:
    handler = watching(clock)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        provider.get_tracer("t").start_span("work").end()
        logging.getLogger("opentelemetry.sdk.resources").warning("some unrelated config warning")
        logging.getLogger("app").error("export of the report failed")  # not the SDK
        assert len(exporter.get_finished_spans()) == 1
        assert handler.components(clock())[0].status is Status.HEALTHY
        assert handler.failures == handler.dropped == 0
    finally:
        handler.detach()
        provider.shutdown()


def test_detached_handler_stops_counting(clock: FakeClock) -> None:
    handler = watching(clock)
    handler.detach()
    logging.getLogger("opentelemetry.exporter.otlp").error("Failed to export %s", "spans")
    assert handler.failures == 0


@pytest.mark.parametrize(("logger", "message", "signal"), [
    ("opentelemetry.exporter.otlp.common.http", "Failed to export logs batch code: 501, reason: Not Implemented",
     "logs"),
    ("opentelemetry.exporter.otlp.common.http", "Failed to export spans batch code: 404, reason: Not Found", "traces"),
    ("opentelemetry.exporter.otlp.proto.grpc.exporter",
     "Failed to export metrics to localhost:4317, error code: StatusCode.UNIMPLEMENTED", "metrics"),
    ("opentelemetry.sdk._shared_internal", "Queue full, dropping Log.", "logs"),
    ("opentelemetry.sdk.trace.export", "Exception while exporting Span.", "traces"),
    ("opentelemetry.exporter.otlp.proto.http._log_exporter", "Dropping batch: too large", "logs"),
])
def test_signal_of_each_sdk_report(logger: str, message: str, signal: str) -> None:
    assert signal_of(logger, message) == signal


def test_messages_are_formatted_and_redacted() -> None:
    shown = redact_message("Transient error for https://u:s3cret@collector:4318/v1/logs?api_key=k3y retrying "
                           "(grpc admin:hunter2@collector:4317)")
    assert "s3cret" not in shown and "k3y" not in shown and "hunter2" not in shown
    assert "https://collector:4318/v1/logs?api_key=REDACTED" in shown
    assert len(redact_message("x" * 5000)) <= 303


def test_a_failing_logs_signal_stays_failing_until_a_later_record_goes_through(clock: FakeClock) -> None:
    handler = watching(clock, window=10)
    try:
        logging.getLogger("opentelemetry.exporter.otlp.common.http").error(
            "Failed to export %s batch code: %s, reason: %s", "logs", 501, "Not Implemented")
        comp = handler.components(clock())[0]
        assert comp.status is Status.DEGRADED
        assert "logs export failing since" in comp.reason and "code: 501, reason: Not Implemented" in comp.reason
        clock.advance(60)  # quiet, but nothing was sent: no evidence either way
        assert handler.components(clock())[0].status is Status.DEGRADED
        assert handler.wants_recheck(clock())
        handler.own_record(clock())  # health re-sends its state ...
        assert not handler.wants_recheck(clock())
        clock.advance(9)
        assert handler.components(clock())[0].status is Status.DEGRADED
        clock.advance(1)  # ... and no failure report follows within the evidence delay
        assert handler.components(clock())[0].status is Status.HEALTHY
    finally:
        handler.detach()

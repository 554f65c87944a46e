"""Telemetry export health from the OTel SDK's own reports, with real exporters and processors."""

from __future__ import annotations

import logging

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_hardening.health import HealthConfig, Status
from otel_hardening.health._sources import ExportHealth
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
        assert "pa55" not in comp.reason and "127.0.0.1" not in comp.reason  # templates, not arguments
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

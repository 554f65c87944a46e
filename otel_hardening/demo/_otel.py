"""The demo's OpenTelemetry SDK: in-memory readers the view reads from, plus OTLP export when
``OTEL_EXPORTER_OTLP_ENDPOINT`` is set. Exporter complaints are counted, never printed per batch."""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry._logs import set_logger_provider
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    InMemoryLogRecordExporter,
    SimpleLogRecordProcessor,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

DEFAULT_SERVICE = "otel-hardening-demo"
EXPORT_INTERVAL_MS = 5000
"""Metric export interval when none is configured: the view and Grafana move together."""
EXPORT_TIMEOUT_S = 2.0
"""Per-export timeout when none is configured: with nothing listening, shutdown stays quick."""


class OtlpNotInstalled(RuntimeError):
    pass


class LogTap(logging.Handler):
    """Keeps the last records of a logger tree (for the view) and counts them; prints nothing."""

    def __init__(self, level: int, keep: int = 6) -> None:
        super().__init__(level)
        self.count = 0
        self.recent: deque[str] = deque(maxlen=keep)
        self._lock_ = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = record.getMessage().splitlines()[0][:200]
        except Exception:
            line = str(record.msg)[:200]
        with self._lock_:
            self.count += 1
            self.recent.append(line)

    def snapshot(self) -> tuple[int, tuple[str, ...]]:
        """(records seen, the last ones), taken together: emit() runs on other threads."""
        with self._lock_:
            return self.count, tuple(self.recent)

    def attach(self, name: str) -> None:
        target = logging.getLogger(name)
        target.addHandler(self)
        if target.level == logging.NOTSET or target.level > self.level:
            target.setLevel(self.level)
        target.propagate = False

    def detach(self, name: str) -> None:
        logging.getLogger(name).removeHandler(self)


@dataclass
class Telemetry:
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    logger_provider: LoggerProvider
    reader: InMemoryMetricReader
    log_records: InMemoryLogRecordExporter
    otlp_endpoint: str | None
    export_errors: LogTap = field(default_factory=lambda: LogTap(logging.WARNING))
    events: LogTap = field(default_factory=lambda: LogTap(logging.INFO))

    def shutdown(self) -> None:
        self.meter_provider.shutdown(timeout_millis=int(EXPORT_TIMEOUT_S * 2000))
        self.tracer_provider.shutdown()
        self.logger_provider.shutdown()
        self.export_errors.detach("opentelemetry")
        self.events.detach("otel_hardening")


def setup(env: Mapping[str, str] = os.environ) -> Telemetry:
    """Providers (also set as the global ones), in-memory readers, OTLP exporters if configured."""
    endpoint = env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or None
    exporters = otlp_exporters(env) if endpoint else None
    attributes: dict[str, Any] = {} if env.get("OTEL_SERVICE_NAME") else {"service.name": DEFAULT_SERVICE}
    resource = Resource.create(attributes)

    reader = InMemoryMetricReader()
    readers: list[MetricReader] = [reader]
    tracer_provider = TracerProvider(resource=resource)
    log_records = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(log_records))
    if exporters is not None:
        span_exporter, metric_exporter, log_exporter = exporters
        tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
        interval = float(env.get("OTEL_METRIC_EXPORT_INTERVAL") or EXPORT_INTERVAL_MS)
        readers.append(PeriodicExportingMetricReader(metric_exporter, export_interval_millis=interval))
        logger_provider.add_log_record_processor(BatchLogRecordProcessor(log_exporter))
    meter_provider = MeterProvider(resource=resource, metric_readers=readers)
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(meter_provider)
    set_logger_provider(logger_provider)

    telemetry = Telemetry(tracer_provider, meter_provider, logger_provider, reader, log_records, endpoint)
    telemetry.export_errors.attach("opentelemetry")
    telemetry.events.attach("otel_hardening")
    return telemetry


def otlp_exporters(env: Mapping[str, str]) -> tuple[Any, Any, Any]:
    """(span, metric, log) exporters for OTEL_EXPORTER_OTLP_PROTOCOL (grpc, the default, or http/protobuf)."""
    protocol = env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    timeout = None if env.get("OTEL_EXPORTER_OTLP_TIMEOUT") else EXPORT_TIMEOUT_S
    kwargs: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")  # gRPC's C core would print its own warnings
    try:
        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        elif protocol == "http/protobuf":
            from opentelemetry.exporter.otlp.proto.http._log_exporter import (  # type: ignore[assignment]
                OTLPLogExporter,
            )
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import (  # type: ignore[assignment]
                OTLPMetricExporter,
            )
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[assignment]
                OTLPSpanExporter,
            )
        else:
            raise OtlpNotInstalled(
                f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not supported by the demo: use grpc or http/protobuf")
    except ImportError as exc:
        raise OtlpNotInstalled(
            f"OTEL_EXPORTER_OTLP_ENDPOINT is set but the OTLP exporter for {protocol} is not installed "
            f"({exc.name}): pip install 'otel-hardening[otlp]'") from None
    return OTLPSpanExporter(**kwargs), OTLPMetricExporter(**kwargs), OTLPLogExporter(**kwargs)

"""The four client set-ups compared, built the way real applications build them.

1. bare httpx;
2. httpx + opentelemetry-instrumentation-httpx, with an SDK as apps configure it: a
   ``BatchSpanProcessor`` and a ``PeriodicExportingMetricReader``, both exporting to exporters that
   drop (so the network cost of export is not measured, the SDK's is);
3. 2 + ``otel_hardening.install()`` with everything on (retries, circuits, budgets, resource tracking
   and health);
4. 2 + what users hand-roll instead: stamina retries around pybreaker's ``CircuitBreaker.call()``
   (``with breaker.calling()`` in async code, where ``call()`` would only see the coroutine object).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import httpx
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

VARIANTS = {
    1: "bare httpx",
    2: "httpx + OTel instrumentation",
    3: "2 + otel-hardening (install(), all on)",
    4: "2 + stamina + pybreaker.call()",
}
LIMITS = httpx.Limits(max_connections=256, max_keepalive_connections=256)
TIMEOUT = httpx.Timeout(25.0)
"""Roomy enough for callgrind's ~50x slowdown; under the 30 s retry deadline, so the hardening layer
takes the same path (timeouts kept as they are) as with httpx's default 5 s."""

SyncGet = Callable[[str], httpx.Response]
AsyncGet = Callable[[str], Awaitable[httpx.Response]]


class DropSpans(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


class DropMetrics(MetricExporter):
    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        return None


def sdk(metric_interval: float, span_exporter: SpanExporter | None = None,
        metric_exporter: MetricExporter | None = None) -> tuple[TracerProvider, MeterProvider]:
    """Global providers as an application sets them up (exporters that drop unless given)."""
    tp = TracerProvider()
    tp.add_span_processor(BatchSpanProcessor(span_exporter or DropSpans()))
    reader = PeriodicExportingMetricReader(metric_exporter or DropMetrics(),
                                           export_interval_millis=metric_interval * 1000)
    mp = MeterProvider(metric_readers=[reader])
    trace.set_tracer_provider(tp)
    metrics.set_meter_provider(mp)
    return tp, mp


def setup(variant: int, metric_interval: float) -> None:
    """Turn on what ``variant`` needs, process-wide; clients made afterwards get it."""
    if variant == 1:
        return
    sdk(metric_interval)
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    HTTPXClientInstrumentor().instrument()
    if variant == 3:
        import otel_hardening

        otel_hardening.install()


class ServerError(Exception):
    """A 5xx, raised inside the breaker so the hand-rolled variant counts it as a failure."""


def _checked(response: httpx.Response) -> httpx.Response:
    if response.status_code >= 500:
        raise ServerError(response.status_code)
    return response


def sync_getter(variant: int, client: httpx.Client) -> SyncGet:
    if variant != 4:
        return client.get
    import pybreaker
    import stamina

    breaker = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=30)

    @stamina.retry(on=(httpx.TransportError, ServerError), attempts=3, timeout=30.0)
    def get(url: str) -> httpx.Response:
        response: httpx.Response = breaker.call(lambda: _checked(client.get(url)))
        return response

    return get


def async_getter(variant: int, client: httpx.AsyncClient) -> AsyncGet:
    if variant != 4:
        return client.get
    import pybreaker
    import stamina

    breaker = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=30)

    @stamina.retry(on=(httpx.TransportError, ServerError), attempts=3, timeout=30.0)
    async def get(url: str) -> httpx.Response:
        with breaker.calling():
            return _checked(await client.get(url))

    return get

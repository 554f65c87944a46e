"""5,000 upstreams through one hardened client: memory, collection time, series and health components.

    python -m bench.scale            # prints one JSON line
    from bench.scale import run; run(quick=True)

A crawler or webhook sender calls thousands of distinct hosts. Every request goes through a loopback
upstream used as an HTTP proxy, so ``http://h17.test/`` is its own upstream to the layer while the
network side stays one keep-alive connection. Set-up as real apps run it: a BatchSpanProcessor (its
exporter drops spans) and a metric reader collected on demand, so one collection can be timed.

Goals (issue 8): RSS growth <= 10 MiB, one metric collection <= 50 ms, series per metric <= the cap.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Sequence
from typing import Any

import httpx
import psutil
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

import otel_hardening
from bench import _upstream
from bench._proc import child_main
from otel_hardening import RetryPolicy
from otel_hardening.health._sources import Upstreams
from otel_hardening.health.config import HealthConfig
from otel_hardening.http import registry

UPSTREAMS = 5000
GOALS = {"rss_growth_mib": 10.0, "collection_ms": 50.0}


class _Drop(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def _rss_mib() -> float:
    gc.collect()
    return float(psutil.Process().memory_info().rss) / 2**20


def _series(reader: InMemoryMetricReader) -> dict[str, int]:
    data = reader.get_metrics_data()
    out: dict[str, int] = {}
    for rm in data.resource_metrics if data else []:
        for sm in rm.scope_metrics:
            if sm.scope.name == "otel_hardening":
                for m in sm.metrics:
                    out[m.name] = len(list(m.data.data_points))
    return out


def run(quick: bool = True) -> dict[str, Any]:
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(_Drop()))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    with _upstream.running() as upstream:
        proxy = upstream.url.rsplit("/", 1)[0]
        client = otel_hardening.harden(httpx.Client(proxy=proxy, timeout=10), retry=RetryPolicy(max_attempts=2),
                                       tracer_provider=tracer_provider, meter_provider=meter_provider)
        for i in range(200):  # warm-up: imports, the pool, the SDK's instruments, the first series
            client.get(f"http://warm{i}.test/")
        reader.get_metrics_data()
        before = _rss_mib()
        started = time.monotonic()
        for i in range(UPSTREAMS):
            client.get(f"http://h{i}.test/")
        seconds = time.monotonic() - started
        after = _rss_mib()
        timings = []
        for _ in range(3 if quick else 11):
            t0 = time.perf_counter()
            reader.get_metrics_data()
            timings.append((time.perf_counter() - t0) * 1000)
        series = _series(reader)
        health = registry.snapshot()
        components = Upstreams(HealthConfig()).components(time.monotonic())
        client.close()
    meter_provider.shutdown()
    tracer_provider.shutdown()
    reg = registry.REGISTRY
    result = {
        "upstreams_called": UPSTREAMS + 200,
        "requests_per_second": round(UPSTREAMS / seconds),
        "rss_growth_mib": round(after - before, 2),
        "collection_ms_median": round(statistics.median(timings), 2),
        "collection_ms": [round(t, 2) for t in timings],
        "upstreams_kept": len(reg),
        "max_upstreams": reg.max_upstreams,
        "max_upstream_series": reg.max_series,
        "series_per_metric": series,
        "max_series_per_metric": max(series.values()),
        "health_upstream_entries": len(health),
        "health_components": len(components),
        "goals": GOALS,
    }
    result["ok"] = (result["rss_growth_mib"] <= GOALS["rss_growth_mib"]
                    and result["collection_ms_median"] <= GOALS["collection_ms"]
                    and result["max_series_per_metric"] <= reg.max_upstreams)
    return result


if __name__ == "__main__":
    child_main(lambda spec: run(bool(spec.get("quick", True))))

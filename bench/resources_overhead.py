"""Background cost at the defaults: one metric collection, one leak-sampler tick, one health evaluation,
each as a share of one core at its default interval; and how much a tracemalloc hunt slows the app.

``python -m bench.resources_overhead '{"quick": false}'`` (normally through ``python -m bench``).
The probes behind a tick are itemised by ``python bench/resources_cost.py``.
"""

from __future__ import annotations

import statistics
import threading
import time
import tracemalloc
from typing import Any

import httpx

from bench import _proc
from bench._layer import URL, Canned
from bench.resources_cost import collection_cpu_us, cpu_us

EXPORT_INTERVAL = 60.0
"""The SDK's default ``OTEL_METRIC_EXPORT_INTERVAL`` (60 s): one collection per interval."""


def _allocating(n: int) -> None:
    kept = []
    for i in range(n):
        kept.append({"i": i, "s": str(i)})
        if len(kept) > 1000:
            kept.clear()


def _hunt_slowdown(work: Any, rounds: int) -> float:
    """CPU of ``work`` with a hunt running in the background against without, median of rounds."""
    from otel_hardening.resources import _hunt
    from otel_hardening.resources.config import ResourceConfig

    config = ResourceConfig()
    ratios = []
    for _ in range(rounds):
        start = time.process_time()
        work()
        plain = time.process_time() - start
        stop = threading.Event()
        hunting = threading.Thread(target=_hunt.run, args=(3600.0, config.hunt_top, config.hunt_frames,
                                                            config.hunt_max_memory, stop), daemon=True)
        hunting.start()
        while not tracemalloc.is_tracing():
            time.sleep(0.01)
        start = time.process_time()
        work()
        ratios.append((time.process_time() - start) / plain)
        stop.set()  # the hunt's checkpoints are inside the work; its final report is not app time
        hunting.join()
    return statistics.median(ratios)


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider

    import otel_hardening
    from otel_hardening.config import HardeningConfig
    from otel_hardening.health._runtime import Monitor
    from otel_hardening.resources._sampler import Sampler
    from otel_hardening.resources.config import ResourceConfig

    quick = spec.get("quick", False)
    reader = InMemoryMetricReader()
    mp = MeterProvider(metric_readers=[reader])
    tp = TracerProvider()
    otel_hardening.install(tracer_provider=tp, meter_provider=mp)
    client = otel_hardening.harden(httpx.Client(transport=Canned()), tracer_provider=tp, meter_provider=mp)
    for i in range(20):  # twenty upstreams with some traffic, so their series are collected
        for _ in range(5):
            client.get(f"http://upstream-{i}.test/")
    collection = collection_cpu_us(reader.get_metrics_data, 5 if quick else 30)
    data: Any = reader.get_metrics_data()
    points = sum(len(m.data.data_points) for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics)

    config = HardeningConfig()
    sampler = Sampler(ResourceConfig(leak_warmup=0.0))
    for _ in range(70):  # a full default window of history
        sampler.tick()
    tick = cpu_us(sampler.tick, 10 if quick else 50)
    monitor = Monitor(config.health, on_change=lambda previous, report: None)
    health = cpu_us(monitor.evaluate, 20 if quick else 200)
    otel_hardening.uninstall()

    def share(us: float, interval: float) -> float:
        return us / 1e6 / interval * 100

    n = 2000 if quick else 20000
    return {
        "collection_us": collection, "collection_points": points,
        "collection_core_pct": share(collection, EXPORT_INTERVAL),
        "sampler_tick_us": tick, "sampler_core_pct": share(tick, config.resources.interval),
        "health_eval_us": health, "health_core_pct": share(health, config.health.interval),
        "total_core_pct": share(collection, EXPORT_INTERVAL) + share(tick, config.resources.interval)
        + share(health, config.health.interval),
        "hunt_frames": config.resources.hunt_frames,
        "hunt_slowdown_requests": _hunt_slowdown(lambda: [client.get(URL) for _ in range(n // 10)], 1 if quick else 3),
        "hunt_slowdown_allocating": _hunt_slowdown(lambda: _allocating(n * 10), 1 if quick else 3),
    }


if __name__ == "__main__":
    _proc.child_main(measure)

"""CPU cost of resource tracking: one metric collection, one sampler tick, and the probes behind them.

    python bench/resources_cost.py

CPU time (``time.process_time``) per call, averaged; the budget for one collection is 1 ms.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import threading
import time
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import psutil
from opentelemetry.metrics import CallbackOptions
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from otel_hardening import resources
from otel_hardening.resources import _probe, _trend
from otel_hardening.resources._sampler import Sampler
from otel_hardening.resources.config import ResourceConfig


def cpu_us(fn: Callable[[], object], n: int = 200) -> float:
    fn()
    start = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - start) / n * 1e6


def collection_cpu_us(collect: Callable[[], object], n: int = 30) -> float:
    """CPU of whole collections spaced past the probe's cache, as a reader on a schedule sees them."""
    collect()
    total = 0.0
    for _ in range(n):
        time.sleep(_probe.ProcessProbe.max_age + 0.01)
        start = time.process_time()
        collect()
        total += time.process_time() - start
    return total / n * 1e6


def main() -> None:
    socks = [socket.socket() for _ in range(50)]
    files = [open(os.devnull) for _ in range(100)]  # noqa: SIM115
    proc = psutil.Process()
    print(f"process: rss={proc.memory_info().rss >> 20} MiB, fds={proc.num_fds()}, "
          f"threads={proc.num_threads()}, cpus={len(os.sched_getaffinity(0))}")

    empty = InMemoryMetricReader()
    MeterProvider(metric_readers=[empty])
    reader = InMemoryMetricReader()
    resources.start(ResourceConfig(interval=60.0, leak_window=3600.0), MeterProvider(metric_readers=[reader]))
    sdk_only = cpu_us(empty.get_metrics_data)
    collect = collection_cpu_us(reader.get_metrics_data)
    state = resources._state
    assert state is not None
    options = CallbackOptions()
    ours = collection_cpu_us(lambda: [list(cb(options)) for cb in state.binding.callbacks])
    print(f"one collection, our {len(state.binding.callbacks)} callbacks only: {ours:.0f} us CPU")
    print(f"one collection through the SDK (callbacks + SDK aggregation of their points): {collect:.0f} us "
          f"(SDK collect with no instruments: {sdk_only:.0f} us)")
    resources.stop()

    probe = _probe.ProcessProbe()
    probe.max_age = 0.0  # a fresh reading every call
    print(f"  cheap probe (oneshot rss/vms/cpu/threads + fds + rlimit): {cpu_us(probe.read):.0f} us")
    print(f"  fd table socket count (fstat per fd): {cpu_us(_probe.socket_count):.0f} us")
    print(f"  psutil net_connections('all'): {cpu_us(lambda: proc.net_connections('all'), 50):.0f} us")
    print(f"  USS (memory_full_info) at {proc.memory_info().rss >> 20} MiB RSS: "
          f"{cpu_us(proc.memory_full_info, 50):.0f} us")

    sampler = Sampler(ResourceConfig(leak_warmup=0.0))
    for _ in range(70):  # a full default window of history
        sampler.tick()
    print(f"sampler tick (all probes + 4 trend verdicts on 60 points): {cpu_us(sampler.tick, 50):.0f} us")
    times = [i * 10.0 for i in range(60)]
    values = [1e8 + 1000 * t for t in times]
    params = _trend.TrendParams(600.0, 1024.0, 4096.0)
    print(f"  one trend verdict, 60 points: {cpu_us(lambda: _trend.assess(times, values, params)):.0f} us")

    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    gate = asyncio.Event()
    for _ in range(1000):
        loop.call_soon_threadsafe(lambda: loop.create_task(gate.wait()))
    time.sleep(0.2)
    print(f"  asyncio tasks per loop, 1000 tasks alive: {cpu_us(_probe.tasks_per_loop, 50):.0f} us")
    loop.call_soon_threadsafe(gate.set)
    time.sleep(0.2)
    loop.call_soon_threadsafe(loop.stop)

    blob = bytearray(b"\x01") * (1 << 30)
    print(f"  USS at {proc.memory_info().rss >> 20} MiB RSS: {cpu_us(proc.memory_full_info, 10):.0f} us")
    del blob
    for s in socks:
        s.close()
    for f in files:
        f.close()


if __name__ == "__main__":
    main()

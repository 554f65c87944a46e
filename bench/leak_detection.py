"""Detection-quality benchmark for the leak detector and the tracemalloc hunt.

Every scenario runs in its own subprocess with resource tracking on and a window 100x shorter than
the default (interval 0.1 s, window 6 s, warm-up 1 s; the memory minimum rate is scaled by the same
100x, 1 KiB/s -> 100 KiB/s), so "1 MiB/min" becomes ~1.7 MB/s. The child polls the SDK metric reader
for ``hardening.resource.leak.suspected`` and reports when each resource first flipped to 1 and, for
memory leaks, which line the automatic hunt ranked first.

    python bench/leak_detection.py              # all scenarios, markdown table
    python bench/leak_detection.py --child NAME # one scenario (used by the table and by the tests)

The same recorded RSS series are also judged by a naive Mann-Kendall test (p < 0.05 on each full
window) to show how many false positives the naive approach gives on the non-leak scenarios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

SCALE = 100.0
ENV = {
    "OTEL_PYTHON_HARDENING_RESOURCE_INTERVAL": "0.1",
    "OTEL_PYTHON_HARDENING_LEAK_WINDOW": "6",
    "OTEL_PYTHON_HARDENING_LEAK_WARMUP": "1",
    "OTEL_PYTHON_HARDENING_LEAK_MIN_MEMORY_RATE": str(1024 * SCALE),
    "OTEL_PYTHON_HARDENING_LEAK_HUNT_DURATION": "1",
    "OTEL_PYTHON_HARDENING_LEAK_HUNT_COOLDOWN": "0",
    # a fixed mmap threshold, so freed large buffers go back to the OS and a sawtooth shows in RSS
    "MALLOC_MMAP_THRESHOLD_": "131072",
}
TICK = 0.01
PERIOD = float(os.environ.get("LEAK_BENCH_SAWTOOTH_PERIOD", "1"))
"""Seconds per allocate/free cycle; the tests shorten it together with the window."""
CHUNK = bytes(range(256))


class Scenario:
    """Called every TICK seconds with the seconds since start; holds what it allocates."""

    resource: str | None = None  # the leaking resource, None for a non-leak
    seconds = 15.0

    def __init__(self) -> None:
        self.kept: list[Any] = []
        self.temp: list[bytes] = []
        self.rng = random.Random(7)

    def step(self, t: float) -> None:
        raise NotImplementedError


class SteadyLeak(Scenario):
    resource = "memory"  # 1 MiB/min scaled 100x: 16 KiB every 10 ms

    def step(self, t: float) -> None:
        self.kept.append(CHUNK * 64)  # <- leaking line


class SlowLeak(Scenario):
    resource = "memory"  # 4 KiB/s scaled (~340 MiB/day unscaled), 4x the minimum rate
    seconds = 20.0

    def step(self, t: float) -> None:
        self.kept.append(CHUNK * 16)  # <- leaking line


class SawtoothLeak(Scenario):
    resource = "memory"  # the steady leak under a 16 MB allocate/free cycle every second

    def step(self, t: float) -> None:
        self.kept.append(CHUNK * 64)  # <- leaking line
        sawtooth(self, t)


def sawtooth(s: Scenario, t: float) -> None:
    if int(t / PERIOD) != int((t - TICK) / PERIOD):
        s.temp.clear()
    if len(s.temp) < 64:
        s.temp.append(CHUNK * 1024)  # 256 KiB, above the mmap threshold


class FdLeak(Scenario):
    resource = "fds"

    def step(self, t: float) -> None:
        if len(self.kept) < t * 5:
            self.kept.append(open(os.devnull))  # noqa: SIM115


class ThreadLeak(Scenario):
    resource = "threads"

    def step(self, t: float) -> None:
        if len(self.kept) < t * 3:
            gate = threading.Event()
            thread = threading.Thread(target=gate.wait, daemon=True)
            thread.start()
            self.kept.append((gate, thread))


class TaskLeak(Scenario):
    resource = "tasks"

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, name="app-loop", daemon=True).start()
        self.never = asyncio.Event()

    def step(self, t: float) -> None:
        if len(self.kept) < t * 5:
            self.kept.append(None)
            self.loop.call_soon_threadsafe(lambda: self.loop.create_task(self.never.wait()))


class Plateau(Scenario):
    seconds = 20.0  # a cache filling for 3 s past warm-up (half a window), then stable

    def step(self, t: float) -> None:
        if t < 4.0:
            self.kept.append(CHUNK * 64)


class Sawtooth(Scenario):
    seconds = 20.0

    def step(self, t: float) -> None:
        sawtooth(self, t)


class Bursty(Scenario):
    seconds = 20.0  # bursts of 10-40 MB held 0.1-0.5 s, ~once a second, plus a request-rate cache
    until = 0.0

    def step(self, t: float) -> None:
        if self.temp and t > self.until:
            self.temp.clear()
        if not self.temp and self.rng.random() < TICK:
            self.temp.extend(CHUNK * 1024 for _ in range(self.rng.randint(40, 160)))
            self.until = t + self.rng.uniform(0.1, 0.5)


class OneOff(Scenario):
    seconds = 20.0  # 100 MB allocated once, mid-run, and kept

    def step(self, t: float) -> None:
        if t >= 8.0 and not self.kept:
            self.kept.append(CHUNK * (400 * 1024))


SCENARIOS: dict[str, type[Scenario]] = {
    "steady leak": SteadyLeak, "slow leak": SlowLeak, "leak under sawtooth": SawtoothLeak,
    "fd leak": FdLeak, "thread leak": ThreadLeak, "asyncio task leak": TaskLeak,
    "cache plateau": Plateau, "sawtooth": Sawtooth, "bursty load": Bursty, "one-off allocation": OneOff,
}


def child(name: str, seconds: float | None) -> dict[str, Any]:
    import inspect

    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from otel_hardening import resources
    from otel_hardening.resources.config import ResourceConfig

    scenario = SCENARIOS[name]()
    source, first = inspect.getsourcelines(type(scenario).step)
    leak_line = next((first + i for i, line in enumerate(source) if "<- leaking line" in line), None)
    reader = InMemoryMetricReader()
    logs = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    resources.start(ResourceConfig.from_env(os.environ), MeterProvider(metric_readers=[reader]), logger_provider)
    start = time.monotonic()
    flips: dict[str, float] = {}
    recorded: dict[float, float] = {}  # the sampler keeps one window; the naive test gets all of it
    end = start + (seconds or scenario.seconds)
    next_poll = start
    while (now := time.monotonic()) < end:
        scenario.step(now - start)
        if now >= next_poll:
            next_poll = now + 0.1
            if resources._state is not None:
                recorded.update(resources._state.sampler.series("memory"))
            for attrs, value in _points(reader, "hardening.resource.leak.suspected"):
                if value == 1:
                    flips.setdefault(str(attrs["hardening.resource"]), round(now - start, 2))
            if scenario.resource in flips and (scenario.resource != "memory" or logs.get_finished_logs()):
                break
        time.sleep(TICK)
    report = [r.log_record for r in logs.get_finished_logs()]
    top = None
    if report:
        first_log: Any = report[0].attributes or {}
        top = {"file": first_log.get("code.file.path"), "line": first_log.get("code.line.number")}
    series = sorted(recorded.items())
    resources.stop()
    return {"flips": flips, "top": top, "leak_line": leak_line, "file": os.path.abspath(__file__),
            "series": series, "threads_after_stop": [t.name for t in threading.enumerate()
                                                     if t.name.startswith("otel-hardening")]}


def _points(reader: Any, metric: str) -> list[tuple[dict[str, Any], float]]:
    data = reader.get_metrics_data()
    return [(dict(p.attributes), p.value) for rm in data.resource_metrics for sm in rm.scope_metrics
            for m in sm.metrics if m.name == metric for p in m.data.data_points]


def run_child(name: str, seconds: float | None = None, extra_env: dict[str, str] | None = None) -> dict[str, Any]:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, **ENV, **(extra_env or {}), "PYTHONPATH": root}
    cmd = [sys.executable, os.path.abspath(__file__), "--child", name]
    if seconds:
        cmd += ["--seconds", str(seconds)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=True)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def naive_mann_kendall_flags(series: list[list[float]], window: float = 6.0) -> tuple[int, int]:
    """Windows (one per sample) where a textbook Mann-Kendall test says 'increasing' at p < 0.05,
    and windows judged."""
    flagged = judged = 0
    times = [p[0] for p in series]
    values = [p[1] for p in series]
    for end in range(len(series)):
        lo = next(i for i, t in enumerate(times) if t >= times[end] - window)
        v = values[lo:end + 1]
        n = len(v)
        if times[end] - times[lo] < 0.9 * window or n < 10:
            continue
        s = sum((v[j] > v[i]) - (v[j] < v[i]) for i in range(n) for j in range(i + 1, n))
        var = n * (n - 1) * (2 * n + 5) / 18
        z = (s - 1) / math.sqrt(var) if s > 0 else 0.0
        flagged += z > 1.645
        judged += 1
    return flagged, judged


def hunt_overhead(seconds: float = 2.0) -> dict[str, float]:
    """Thread CPU per iteration while a hunt traces the process, over the same without a hunt."""
    import json as json_mod

    from otel_hardening.resources import _hunt

    doc = {"items": [{"id": i, "name": f"item-{i}", "tags": ["a", "b"], "price": i * 1.5} for i in range(50)]}
    workloads: dict[str, Callable[[], object]] = {
        "allocation microloop (dicts + str)": lambda: [{"k": i, "v": str(i)} for i in range(200)],
        "JSON round trip (3 KB document)": lambda: json_mod.loads(json_mod.dumps(doc)),
    }

    def cpu_per_iteration(fn: Callable[[], object]) -> float:
        n, start, deadline = 0, time.thread_time(), time.monotonic() + seconds
        while time.monotonic() < deadline:
            fn()
            n += 1
        return (time.thread_time() - start) / n

    ratios = {}
    for name, fn in workloads.items():
        base = cpu_per_iteration(fn)
        for frames in (1, 3, 5):
            worker = threading.Thread(target=_hunt.run, args=(seconds + 0.3, 10, frames, 1 << 30))
            worker.start()
            time.sleep(0.1)
            traced = cpu_per_iteration(fn)
            worker.join()
            ratios[f"{name}, {frames} frame(s)"] = traced / base
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child")
    parser.add_argument("--seconds", type=float)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.seconds)))
        return
    with ThreadPoolExecutor(2) as pool:
        results = dict(zip(SCENARIOS, pool.map(run_child, SCENARIOS), strict=True))
    print("| scenario | leak? | detected | time to detect (s, scaled) | false positives "
          "| hunt #1 is the leaking line | naive Mann-Kendall: windows flagged |")
    print("|---|---|---|---|---|---|---|")
    for name, res in results.items():
        target = SCENARIOS[name].resource
        flips: dict[str, float] = res["flips"]
        fps = sorted(set(flips) - {target}) if target else sorted(flips)
        detected = "yes" if target in flips else ("no" if target else "-")
        ttd = f"{flips[target]:.1f}" if target in flips else "-"
        hunt = "-"
        if target == "memory":
            top = res["top"]
            hunt = "yes" if top and top["line"] == res["leak_line"] and top["file"] == res["file"] else f"no ({top})"
        flagged, judged = naive_mann_kendall_flags(res["series"])
        naive = f"{flagged}/{judged}"
        print(f"| {name} | {target or 'no'} | {detected} | {ttd} | {', '.join(fps) or 0} | {hunt} | {naive} |")
    for name, ratio in hunt_overhead().items():
        print(f"hunt overhead, {name}: {ratio:.1f}x CPU per iteration while tracemalloc is on")


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main()

"""The four variants side by side in one run: CPU, instructions, wall time, latency, RSS per request.

Every (round, mode, variant) is its own process; within a round the variants run one after the
other in an order rotated each round (1 2 3 4, 2 3 4 1, ...), so drift in machine load spreads over
all of them. Figures are medians over rounds; the ratios 3/2 and 3/4 are medians of the per-round
ratios (each round measures both back to back). Instructions come from callgrind (the median of
``count_runs`` runs per variant and mode: a run's figure moves by up to ±2.5 k instructions per
request with type-cache collisions and thread timing), for the sync and threads modes:
under valgrind's ~50x slowdown 200 concurrent asyncio tasks run into wall-clock waits (the loop's
timeouts, the GIL's switch interval) that do not happen natively, and a run counted ~100 M
instructions per request where native CPU time says ~15 M, so async is judged on CPU time alone.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from bench import _callgrind, _proc, _upstream

MODES = ("sync", "threads", "async", "threads_slow")
MODE_LABELS = {"sync": "sync, 1 thread", "threads": "16 threads, one client", "async": "async, 200 concurrent",
               "threads_slow": "16 threads, upstream answering in 10 ms"}
WORKER_MODE = {"sync": "sync", "threads": "threads", "async": "async", "threads_slow": "threads"}
SLOW_UPSTREAM_MS = 10
CALLGRIND_ENV = {
    # Time-driven background work would be ~50x too frequent per request under valgrind: it is
    # measured on its own (resources section), so the counts here are the request path only.
    "OTEL_PYTHON_HARDENING_RESOURCE_INTERVAL": "3600",
    "OTEL_PYTHON_HARDENING_HEALTH_INTERVAL": "3600",
    "OTEL_BSP_SCHEDULE_DELAY": "3600000",  # batches of 512 spans, as at native speed
    # 200 concurrent requests queue for a minute under valgrind: past the 30 s default deadline. With
    # the client's 25 s timeouts below either deadline, the layer takes the same path as natively.
    "OTEL_PYTHON_HARDENING_RETRY_DEADLINE": "3600",
    # A network quality sample is taken once per window/200 of wall time per upstream: every 0.3 s
    # natively, about 1 in 230 requests of the sync run; ~50x slower, that would be 1 in 5 (each
    # sample ~3.7 k instructions). At the longest window (18 s) it is about 1 in 200, as natively.
    # What a sample costs is measured on its own (bench/features.py).
    "OTEL_PYTHON_HARDENING_QUALITY_WINDOW": "3600",
}
FIGURES = ("cpu_us", "throughput", "p50_ms", "p99_ms", "wall_s", "peak_rss_mib")


@dataclass(frozen=True)
class Plan:
    rounds: int
    requests: dict[str, int]
    warmup: dict[str, int]
    count_requests: dict[str, int]
    """Requests per callgrind run (instrumented, ~50x slower)."""
    count_modes: tuple[str, ...]
    count_variants: tuple[int, ...]
    count_layer: bool
    count_runs: int
    """callgrind runs per variant and mode; the figure is their median."""
    layer_requests: int
    layer_rounds: int
    profile_requests: int
    metric_interval: float = 60.0
    """PeriodicExportingMetricReader interval: the SDK's default (background cost is measured apart)."""


QUICK = Plan(rounds=1, requests={"sync": 150, "threads": 160, "async": 100, "threads_slow": 64},
             warmup={"sync": 20, "threads": 32, "async": 0, "threads_slow": 16},
             count_requests={"sync": 10}, count_modes=("sync",),
             count_variants=(3,), count_layer=False, count_runs=1, layer_requests=1000, layer_rounds=3,
             profile_requests=1000)
FULL = Plan(rounds=5, requests={"sync": 1000, "threads": 1200, "async": 400, "threads_slow": 480},
            # async: no warm-up, connections open in the run as in a burst: with 200 idle keep-alive
            # connections httpcore's pool polls every one of them per request (~100 ms CPU each)
            warmup={"sync": 200, "threads": 320, "async": 0, "threads_slow": 160},
            count_requests={"sync": 200, "threads": 320}, count_modes=("sync", "threads"),
            count_variants=(1, 2, 3, 4), count_layer=True, count_runs=3,
            layer_requests=5000, layer_rounds=7, profile_requests=5000)


def _ratio(runs: dict[int, list[dict[str, Any]]], key: str, a: int, b: int) -> float:
    return float(statistics.median(x[key] / y[key] for x, y in zip(runs[a], runs[b], strict=True)))


def timing(urls: dict[str, str], plan: Plan, log: Callable[[str], None]) -> dict[str, Any]:
    """``urls``: the fast upstream and the slow one (``threads_slow``)."""
    runs: dict[str, dict[int, list[dict[str, Any]]]] = {m: {v: [] for v in (1, 2, 3, 4)} for m in MODES}
    variants = [1, 2, 3, 4]
    for r in range(plan.rounds):
        order = variants[r % 4:] + variants[:r % 4]
        for mode in MODES:
            for v in order:
                url = urls["slow" if mode == "threads_slow" else "fast"]
                spec = {"variant": v, "mode": WORKER_MODE[mode], "url": url, "requests": plan.requests[mode],
                        "warmup": plan.warmup[mode], "metric_interval": plan.metric_interval}
                runs[mode][v].append(_proc.run_json("bench._worker", spec))
            log(f"round {r + 1}/{plan.rounds} {mode}: " + ", ".join(
                f"{v}={runs[mode][v][-1]['cpu_us']:.0f}µs" for v in variants))
    out: dict[str, Any] = {}
    for mode in MODES:
        by_variant = runs[mode]
        out[mode] = {
            "variants": {str(v): {f: statistics.median(x[f] for x in by_variant[v]) for f in FIGURES}
                         for v in variants},
            "cpu_ratio_3_2": _ratio(by_variant, "cpu_us", 3, 2),
            "cpu_ratio_3_4": _ratio(by_variant, "cpu_us", 3, 4),
            "throughput_ratio_3_4": _ratio(by_variant, "throughput", 3, 4),
            "p99_ratio_3_4": _ratio(by_variant, "p99_ms", 3, 4),
            "cpu_rounds_3_2": sorted(x["cpu_us"] / y["cpu_us"]
                                     for x, y in zip(by_variant[3], by_variant[2], strict=True)),
            "cpu_rounds_3_4": sorted(x["cpu_us"] / y["cpu_us"]
                                     for x, y in zip(by_variant[3], by_variant[4], strict=True)),
        }
    return out


def instructions(url: str, plan: Plan, log: Callable[[str], None]) -> dict[str, Any]:
    why = _callgrind.available()
    if why:
        _upstream.loud(f"instruction counts SKIPPED: {why}")
        return {"skipped": why}
    jobs = [(mode, v) for _ in range(plan.count_runs) for mode in plan.count_modes for v in plan.count_variants]

    def one(job: tuple[str, int]) -> tuple[str, int, float]:
        mode, v = job
        n = plan.count_requests[mode]
        spec = {"variant": v, "mode": mode, "url": url, "requests": n,
                "warmup": plan.warmup[mode], "metric_interval": 3600.0}
        result = _callgrind.instructions("bench._worker", spec, CALLGRIND_ENV)
        log(f"instructions {mode} variant {v}: {result['instructions'] / n / 1e6:.4f} M/request")
        return mode, v, result["instructions"] / n

    with ThreadPoolExecutor(2) as pool:  # valgrind runs one core per process; counts do not care
        done = list(pool.map(one, jobs))
    runs: dict[tuple[str, int], list[float]] = {}
    for mode, v, per in done:
        runs.setdefault((mode, v), []).append(per)
    out: dict[str, Any] = {}
    for (mode, v), pers in runs.items():
        out.setdefault(mode, {})[str(v)] = statistics.median(pers)
        out[mode][f"runs_{v}"] = sorted(pers)
    for counts in out.values():
        for a, b in (("3", "2"), ("3", "4")):
            if a in counts and b in counts:
                counts[f"ratio_{a}_{b}"] = counts[a] / counts[b]
    return out


def layer(plan: Plan, log: Callable[[str], None]) -> dict[str, Any]:
    out = _proc.run_json("bench._layer", {"kind": "cpu", "requests": plan.layer_requests,
                                          "rounds": plan.layer_rounds, "metric_interval": plan.metric_interval})
    log(f"layer alone: {out['layer_cpu_us']:.1f} µs CPU per request")
    if plan.count_layer and _callgrind.available() is None:
        n = max(200, plan.layer_requests // 10)
        counts = {}
        for hardened in (False, True):
            spec = {"kind": "count", "hardened": hardened, "requests": n, "warmup": 200, "metric_interval": 3600.0}
            counts[hardened] = _callgrind.instructions("bench._layer", spec, CALLGRIND_ENV)["instructions"] / n
        layer_instructions = counts[True] - counts[False]
        # the layer's instructions at the rate this machine ran the plain client's (same kind of code)
        out.update(plain_instructions=counts[False], hardened_instructions=counts[True],
                   layer_instructions=layer_instructions,
                   layer_us_from_instructions=layer_instructions * out["plain_cpu_us"] / counts[False])
        log(f"layer alone: {out['layer_instructions'] / 1e3:.0f} k instructions per request")
    return out


def profile(url: str, plan: Plan) -> dict[str, Any]:
    return _proc.run_json("bench._layer", {"kind": "profile", "requests": plan.profile_requests, "url": url,
                                           "upstream_requests": plan.profile_requests // 5,
                                           "metric_interval": plan.metric_interval})

"""One measured run in its own process: ``python -m bench._worker '<json spec>'``.

It prints one JSON line with the result. Spec keys: ``variant`` (1-4), ``mode`` (sync, threads,
async), ``url``, ``requests``, ``warmup``, ``metric_interval``, and ``gate``: a directory for
callgrind runs (see :mod:`bench._callgrind`): after the warm-up the worker prints ``ready`` and
waits for ``gate/go`` (instrumentation is switched on meanwhile), runs the requests without timing
each, prints ``done`` and waits for ``gate/stop``, so only the requests are counted.
"""

from __future__ import annotations

import asyncio
import gc
import os
import resource
import threading
import time
from typing import Any

import httpx

from bench import _proc, _variants

THREADS = 16
CONCURRENCY = 200


def run_sync(get: _variants.SyncGet, url: str, n: int, lat: list[float] | None) -> None:
    clock = time.perf_counter
    for _ in range(n):
        if lat is None:
            get(url)
        else:
            t = clock()
            get(url)
            lat.append(clock() - t)


def run_threads(get: _variants.SyncGet, url: str, n: int, lat: list[float] | None) -> None:
    per = [n // THREADS + (1 if i < n % THREADS else 0) for i in range(THREADS)]
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            run_sync(get, url, k, lat)  # list.append is atomic: one list for all threads
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in per]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


async def run_async(get: _variants.AsyncGet, url: str, n: int, lat: list[float] | None) -> None:
    sem = asyncio.Semaphore(CONCURRENCY)
    clock = time.perf_counter

    async def one() -> None:
        async with sem:
            t = clock()
            await get(url)
            if lat is not None:
                lat.append(clock() - t)

    await asyncio.gather(*(one() for _ in range(n)))


def _freeze(say: str) -> None:
    """Before a count: everything allocated so far (imports, set-up, warm-up) leaves the collector's
    view (``gc.freeze()``). A full collection that lands in a few hundred counted requests would
    otherwise scan the whole start-up heap and add tens of thousands of instructions to each request
    of one run and not of the next; the collections the requests themselves cause are still counted."""
    if say == "ready":
        gc.collect()
        gc.freeze()


def wait(gate: str | None, say: str, file: str) -> None:
    """Tell the parent where we are and poll for its answer (a blocked read would stall callgrind's
    command polling). Slowly: callgrind_control takes ~0.1-0.3 s to act, and the polls it counts in
    that time would add a varying few thousand instructions to each request's figure."""
    if gate is None:
        return
    _freeze(say)
    print(say, flush=True)
    path = os.path.join(gate, file)
    while not os.path.exists(path):
        time.sleep(0.05)


async def async_wait(gate: str | None, say: str, file: str) -> None:
    if gate is None:
        return
    _freeze(say)
    print(say, flush=True)
    path = os.path.join(gate, file)
    while not os.path.exists(path):
        await asyncio.sleep(0.05)


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    variant, mode, url = spec["variant"], spec["mode"], spec["url"]
    n, warmup = spec["requests"], spec["warmup"]
    _variants.setup(variant, spec.get("metric_interval", 60.0))
    gate = spec.get("gate")
    lat: list[float] | None = None if gate else []
    if mode == "async":
        async def main() -> tuple[float, float]:
            async with httpx.AsyncClient(limits=_variants.LIMITS, timeout=_variants.TIMEOUT) as client:
                get = _variants.async_getter(variant, client)
                await run_async(get, url, warmup, None)
                await async_wait(gate, "ready", "go")
                cpu, wall = time.process_time(), time.perf_counter()
                await run_async(get, url, n, lat)
                cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
                await async_wait(gate, "done", "stop")
                return cpu, wall

        cpu, wall = asyncio.run(main())
    else:
        with httpx.Client(limits=_variants.LIMITS, timeout=_variants.TIMEOUT) as client:
            get = _variants.sync_getter(variant, client)
            runner = run_threads if mode == "threads" else run_sync
            runner(get, url, warmup, None)
            wait(gate, "ready", "go")
            cpu, wall = time.process_time(), time.perf_counter()
            runner(get, url, n, lat)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            wait(gate, "done", "stop")
    result: dict[str, Any] = {"variant": variant, "mode": mode, "requests": n,
                              "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if lat is not None and n:
        lat.sort()
        result.update({
            "cpu_us": cpu / n * 1e6, "wall_s": wall, "throughput": n / wall,
            "p50_ms": lat[len(lat) // 2] * 1e3, "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e3,
        })
    return result


if __name__ == "__main__":
    _proc.child_main(measure)

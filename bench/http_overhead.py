"""Client CPU per request: OTel-traced httpx vs. the same plus otel_hardening, side by side in one run.

Goal (issue #2): without faults the hardening layer adds at most 5 % client CPU per request, in sync,
16-threads-one-client and async-200-concurrent modes. The upstream runs in its own process, so only
the client's CPU (``time.process_time``) is counted. Rounds alternate plain/hardened; the figure is
the median per-request CPU of each, and their ratio.

    python bench/http_overhead.py [--requests 2000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import httpx
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

import otel_hardening


class _Discard(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def sync_mode(client: httpx.Client, url: str, n: int) -> None:
    for _ in range(n):
        client.get(url)


def threads_mode(client: httpx.Client, url: str, n: int) -> None:
    per = n // 16

    def work() -> None:
        for _ in range(per):
            client.get(url)

    threads = [threading.Thread(target=work) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def async_mode(client: httpx.AsyncClient, url: str, n: int) -> None:
    async def main() -> None:
        sem = asyncio.Semaphore(200)

        async def one() -> None:
            async with sem:
                await client.get(url)

        await asyncio.gather(*(one() for _ in range(n)))

    asyncio.run(main())


class _Canned(httpx.BaseTransport):
    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=httpx.ByteStream(b"ok"), headers={"content-length": "2"})


def layer_cost(tp: TracerProvider, mp: MeterProvider, n: int = 20000) -> float:
    """The hardening layer's own CPU per request, with no network under it (stable across runs)."""
    plain = httpx.Client(transport=_Canned())
    hard = otel_hardening.harden(httpx.Client(transport=_Canned()), tracer_provider=tp, meter_provider=mp)
    costs: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(5):
        for hardened, client in ((False, plain), (True, hard)):
            costs[hardened].append(measure(partial(sync_mode, client, "http://upstream.test/", n), n))
    return statistics.median(costs[True]) - statistics.median(costs[False])


def measure(run: Callable[[], None], n: int) -> float:
    """Client CPU microseconds per request."""
    start = time.process_time()
    run()
    return (time.process_time() - start) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--modes", default="sync,threads,async", help="comma-separated subset")
    args = parser.parse_args()

    upstream = subprocess.Popen([sys.executable, str(Path(__file__).with_name("upstream.py"))],
                                stdout=subprocess.PIPE, text=True)
    assert upstream.stdout is not None
    url = f"http://127.0.0.1:{upstream.stdout.readline().strip()}/bench"

    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(_Discard()))
    mp = MeterProvider(metric_readers=[InMemoryMetricReader()])
    HTTPXClientInstrumentor().instrument(tracer_provider=tp, meter_provider=mp)
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)

    def clients(hardened: bool) -> tuple[httpx.Client, Callable[[], httpx.AsyncClient]]:
        sync_client = httpx.Client(limits=limits)
        if hardened:
            otel_hardening.harden(sync_client, tracer_provider=tp, meter_provider=mp)

        def make_async() -> httpx.AsyncClient:
            c = httpx.AsyncClient(limits=limits)
            return otel_hardening.harden(c, tracer_provider=tp, meter_provider=mp) if hardened else c

        return sync_client, make_async

    n = args.requests
    modes = tuple(args.modes.split(","))
    results: dict[str, dict[bool, list[float]]] = {m: {False: [], True: []} for m in modes}
    ratios: dict[str, list[float]] = {m: [] for m in modes}
    pair = {False: clients(False), True: clients(True)}
    for hardened in (False, True):  # warm up connections and code paths
        sync_mode(pair[hardened][0], url, 200)
    gc.collect()
    gc.disable()  # a collection landing in one variant's round is noise, not cost
    try:
        for round_ in range(args.rounds):
            order = (False, True) if round_ % 2 == 0 else (True, False)
            for mode in modes:
                cost: dict[bool, float] = {}
                for hardened in order:
                    client, make_async = pair[hardened]
                    if mode == "sync":
                        run = partial(sync_mode, client, url, n)
                    elif mode == "threads":
                        run = partial(threads_mode, client, url, n)
                    else:
                        run = partial(async_mode, make_async(), url, n)
                    cost[hardened] = measure(run, n)
                    results[mode][hardened].append(cost[hardened])
                ratios[mode].append(cost[True] / cost[False])
                gc.collect()
    finally:
        gc.enable()
    upstream.terminate()

    print(f"{'mode':<28}{'plain µs/req':>14}{'hardened µs/req':>17}{'overhead':>10}{'goal':>8}")
    labels = {"sync": "sync", "threads": "16 threads, one client", "async": "async, 200 concurrent"}
    for mode in modes:
        plain = statistics.median(results[mode][False])
        hard = statistics.median(results[mode][True])
        overhead = (statistics.median(ratios[mode]) - 1) * 100
        print(f"{labels[mode]:<28}{plain:>14.1f}{hard:>17.1f}{overhead:>9.1f}%{'≤ 5%':>8}")
    for mode in modes:
        print(f"  {mode} per-round overheads %: " + " ".join(f"{(r - 1) * 100:.1f}" for r in sorted(ratios[mode])))
    print(f"the layer alone (canned inner transport, no network): {layer_cost(tp, mp):.1f} µs CPU per request")
    print("overhead = median over rounds of (hardened / plain) - 1, each round measuring both back to back")


if __name__ == "__main__":
    main()

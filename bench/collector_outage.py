"""A dead telemetry pipeline must not slow requests down or grow memory.

The app (variant 3: OTel-instrumented httpx + ``otel_hardening.install()``) exports over OTLP/gRPC
(``BatchSpanProcessor`` + ``PeriodicExportingMetricReader`` every second) to: the real collector
(``collector/otelcol-config.yaml`` + ``local-overlay.yaml`` through ``otel_hardening.stack``), a
port nobody listens on, and a collector killed (SIGKILL) halfway through the requests. Figures: p99
request latency against the healthy run, and RSS growth from after the warm-up until the process
has produced ``spans`` spans (its requests' spans, then spans from a tight loop on the same tracer
provider so the count is reached in seconds).

``python -m bench.collector_outage '<spec>'`` is the app; :func:`run` drives the scenarios.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import _proc, _upstream, _worker

SCENARIOS = ("healthy", "dead port", "killed mid-run")


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def app(spec: dict[str, Any]) -> dict[str, Any]:
    import gc

    import httpx
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    import otel_hardening
    from bench import _variants

    endpoint = spec["endpoint"]
    _variants.sdk(1.0, OTLPSpanExporter(endpoint=endpoint, insecure=True),
                  OTLPMetricExporter(endpoint=endpoint, insecure=True))
    HTTPXClientInstrumentor().instrument()
    otel_hardening.install()
    n, url = spec["requests"], spec["url"]
    lat: list[float] = []
    with httpx.Client() as client:
        _worker.run_sync(client.get, url, 200, None)
        gc.collect()
        rss0 = _rss_mib()
        _worker.run_sync(client.get, url, n // 2, lat)
        _worker.wait(spec.get("gate"), "half", "go")
        _worker.run_sync(client.get, url, n - n // 2, lat)
    tracer = trace.get_tracer("bench")
    for _ in range(max(0, spec["spans"] - n - 200)):
        tracer.start_span("bench.work").end()
    time.sleep(1.0)  # let the export thread take what it can
    gc.collect()
    lat.sort()
    result = {"p50_ms": lat[len(lat) // 2] * 1e3, "p99_ms": lat[int(len(lat) * 0.99)] * 1e3,
              "rss_growth_mib": _rss_mib() - rss0,
              "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    print(json.dumps(result), flush=True)
    os._exit(0)  # skip the exit-time flush: against a dead collector it waits out its timeout


def _run_app(spec: dict[str, Any], on_half: Callable[[], None]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-col-") as gate:
        argv = [sys.executable, "-m", "bench.collector_outage", json.dumps({**spec, "gate": gate})]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=_proc.ROOT,
                                env={**os.environ, "PYTHONPATH": str(_proc.ROOT)}, stdin=subprocess.DEVNULL)
        assert proc.stdout is not None
        result = None
        for line in proc.stdout:
            if line.strip() == "half":
                on_half()
                Path(gate, "go").touch()
            elif line.startswith("{"):
                result = json.loads(line)
        _, err = proc.communicate(timeout=600)
        if proc.returncode != 0 or result is None:
            raise _proc.BenchCrash(f"collector outage app failed (exit {proc.returncode}):\n{err[-3000:]}")
        return result  # type: ignore[no-any-return]


def run(url: str, quick: bool, log: Callable[[str], None]) -> dict[str, Any]:
    from otel_hardening.stack import LocalStack, Ports, StackError, find_collector, repo_root

    try:
        collector = find_collector(repo_root())
    except StackError as exc:
        _upstream.loud(f"collector outage benchmark SKIPPED: {exc}")
        return {"skipped": str(exc)}
    spec = {"url": url, "requests": 100 if quick else 2000, "spans": 5_000 if quick else 100_000}
    rounds = 1 if quick else 3
    runs: dict[str, list[dict[str, Any]]] = {s: [] for s in SCENARIOS}
    with tempfile.TemporaryDirectory(prefix="bench-stack-") as run_dir:
        for r in range(rounds):
            for scenario in SCENARIOS:
                stack = LocalStack(Path(run_dir) / f"{r}-{scenario.replace(' ', '-')}")
                stack.ports = Ports.pick()
                try:
                    if scenario == "dead port":
                        endpoint = f"127.0.0.1:{_upstream.dead_port()}"
                    else:
                        stack.start_collector(collector)
                        stack.wait_collector_ready()
                        endpoint = f"127.0.0.1:{stack.ports.otlp_grpc}"
                    kill = stack.kill_collector if scenario == "killed mid-run" else lambda: None
                    runs[scenario].append(_run_app({**spec, "endpoint": endpoint}, kill))
                except StackError as exc:
                    _upstream.loud(f"collector outage benchmark SKIPPED: the collector did not start: {exc}")
                    return {"skipped": f"the collector did not start: {str(exc)[:300]}"}
                finally:
                    stack.down()
                log(f"collector {scenario}: p99 {runs[scenario][-1]['p99_ms']:.2f} ms, "
                    f"RSS +{runs[scenario][-1]['rss_growth_mib']:.1f} MiB")
    out: dict[str, Any] = {"requests": spec["requests"], "spans": spec["spans"], "rounds": rounds}
    healthy_p99 = statistics.median(x["p99_ms"] for x in runs["healthy"])
    for scenario, results in runs.items():
        p99 = statistics.median(x["p99_ms"] for x in results)
        out[scenario] = {"p99_ms": p99, "p99_ratio": p99 / healthy_p99,
                         "p50_ms": statistics.median(x["p50_ms"] for x in results),
                         "rss_growth_mib": statistics.median(x["rss_growth_mib"] for x in results)}
    return out


if __name__ == "__main__":
    app(json.loads(sys.argv[1]))

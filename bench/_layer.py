"""The hardening layer alone, and where a traced request's time goes: ``python -m bench._layer '<spec>'``.

``kind``:
- ``cpu``: a plain and a hardened client over a canned inner transport (no network, no httpx
  instrumentation: it wraps ``HTTPTransport``, which the canned transport replaces), alternating
  rounds in one process; the layer's cost is the difference of the medians.
- ``count``: one of the two (``hardened``), gated for callgrind (see :mod:`bench._callgrind`).
- ``profile``: cProfile of the hardened canned client (the layer's own functions, µs per request)
  and of variant 3 against the real upstream (self time grouped by package).
"""

from __future__ import annotations

import cProfile
import pstats
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import httpx

from bench import _proc, _variants, _worker

_BODY = b"ok"


class Canned(httpx.BaseTransport):
    """The cheapest honest inner transport: a fresh 200 response with a 2-byte body."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=httpx.ByteStream(_BODY), headers={"content-length": "2"})


URL = "http://upstream.test/bench"


def clients(metric_interval: float) -> tuple[httpx.Client, httpx.Client]:
    import otel_hardening

    tp, mp = _variants.sdk(metric_interval)
    plain = httpx.Client(transport=Canned())
    hardened = otel_hardening.harden(httpx.Client(transport=Canned()), tracer_provider=tp, meter_provider=mp)
    return plain, hardened


def loop(client: httpx.Client, n: int) -> float:
    """CPU µs per request."""
    get = client.get
    start = time.process_time()
    for _ in range(n):
        get(URL)
    return (time.process_time() - start) / n * 1e6


def cpu(spec: dict[str, Any]) -> dict[str, Any]:
    plain, hardened = clients(spec.get("metric_interval", 60.0))
    n = spec["requests"]
    loop(plain, 500)
    loop(hardened, 500)
    costs: dict[str, list[float]] = {"plain": [], "hardened": []}
    diffs = []
    for r in range(spec["rounds"]):
        order = (("plain", plain), ("hardened", hardened))
        this: dict[str, float] = {}
        for name, client in order if r % 2 == 0 else order[::-1]:
            this[name] = loop(client, n)
            costs[name].append(this[name])
        diffs.append(this["hardened"] - this["plain"])
    return {"plain_cpu_us": statistics.median(costs["plain"]),
            "hardened_cpu_us": statistics.median(costs["hardened"]),
            "layer_cpu_us": statistics.median(diffs), "rounds": spec["rounds"], "requests": n}


def count(spec: dict[str, Any]) -> dict[str, Any]:
    plain, hardened = clients(spec.get("metric_interval", 60.0))
    client = hardened if spec["hardened"] else plain
    loop(client, spec["warmup"])
    _worker.wait(spec.get("gate"), "ready", "go")
    loop(client, spec["requests"])
    _worker.wait(spec.get("gate"), "done", "stop")
    return {"hardened": spec["hardened"], "requests": spec["requests"]}


GROUPS = (("otel_hardening", "otel-hardening"), ("opentelemetry", "OpenTelemetry (SDK, API, httpx instrumentation)"),
          ("wrapt", "OpenTelemetry (SDK, API, httpx instrumentation)"),
          ("httpcore", "httpcore + h11"), ("h11", "httpcore + h11"), ("httpx", "httpx"))


def _group(filename: str) -> str:
    for needle, label in GROUPS:
        if f"/{needle}/" in filename:
            return label
    if filename.startswith("~") or filename.startswith("<"):
        return "C builtins (socket I/O, locks, ...)"
    return "stdlib and other"


def profile(spec: dict[str, Any]) -> dict[str, Any]:
    n = spec["requests"]
    _, hardened = clients(spec.get("metric_interval", 60.0))
    loop(hardened, 500)
    prof = cProfile.Profile()
    prof.enable()
    loop(hardened, n)
    prof.disable()
    stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    rows = []
    for (filename, line, func), (_cc, ncalls, tottime, cumtime, _callers) in stats.items():
        if "/otel_hardening/" in filename:
            short = filename.split("/otel_hardening/", 1)[1]
            rows.append({"function": f"{short}:{line}({func})", "calls_per_request": ncalls / n,
                         "self_us": tottime / n * 1e6, "cumulative_us": cumtime / n * 1e6})
    rows.sort(key=lambda r: -r["self_us"])
    layer_self = sum(r["self_us"] for r in rows)
    for r in rows:
        r["share_pct"] = r["self_us"] / layer_self * 100
    out: dict[str, Any] = {"layer_top": rows[:15], "layer_self_us_profiled": layer_self}
    url = spec.get("url")
    if url:
        out["split"] = _split(url, spec["upstream_requests"], spec.get("metric_interval", 60.0))
    return out


def _split(url: str, n: int, metric_interval: float) -> dict[str, float]:
    """Self time per package of a fully traced and hardened sync request (variant 3), in %."""
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    import otel_hardening

    HTTPXClientInstrumentor().instrument()
    otel_hardening.install()
    with httpx.Client(limits=_variants.LIMITS) as client:
        for _ in range(200):
            client.get(url)
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(n):
            client.get(url)
        prof.disable()
    groups: dict[str, float] = defaultdict(float)
    for (filename, _line, _func), (_cc, _n, tottime, _cum, _callers) in pstats.Stats(prof).stats.items():  # type: ignore[attr-defined]
        groups[_group(filename)] += tottime
    total = sum(groups.values())
    return {k: round(v / total * 100, 1) for k, v in sorted(groups.items(), key=lambda kv: -kv[1])}


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    kinds: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {"cpu": cpu, "count": count, "profile": profile}
    return kinds[spec["kind"]](spec)


if __name__ == "__main__":
    _proc.child_main(measure)

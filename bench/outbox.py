"""The outbox's cost: a deferral, a replay, and nothing for requests it does not defer.

``python -m bench.outbox [--quick] [--instructions-only]`` prints a JSON report; ``python -m bench`` runs it
as its ``outbox`` section (bench/report.py renders it):

- **non-deferrable requests pay nothing**: instructions per request (callgrind, the same method as
  bench/overhead.py) of a hardened client without an outbox (``plain``), of a client without one in a
  process where an outbox exists (``plain_beside_outbox``), and of GETs through a client given an
  outbox (``get_via_outbox``: never deferred, but through the outbox's hook). Upstream: an in-process
  ``httpx.MockTransport`` returning 200, the same for every variant, so only the layers differ.
- **a deferral**: wall time of a POST whose circuit is open (no upstream I/O): ``CircuitOpenError``
  without an outbox, ``RequestDeferred`` (stored, fsynced) with one; per store.
- **a replay**: wall time per entry to drain a backlog through a hardened client (MockTransport 200).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any

import httpx

from bench import _worker

REQUESTS = 2000
WARMUP = 300


def _answer(request: httpx.Request) -> httpx.Response:
    if request.url.host == "down.test":
        raise httpx.ConnectError("down", request=request)
    return _ok(request)


def _ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=b"ok")


def _client(outbox: Any = None, fail_max: int = 1, answer: Any = _answer) -> httpx.Client:
    """Hardened, over a MockTransport: down.test refuses connections (one failure opens its circuit)."""
    import otel_hardening
    from otel_hardening import CircuitPolicy, RetryPolicy

    return otel_hardening.harden(httpx.Client(transport=httpx.MockTransport(answer)),
                                 retry=RetryPolicy(max_attempts=2),
                                 circuit=CircuitPolicy(fail_max=fail_max, reset_timeout=3600), outbox=outbox)


def worker(spec: dict[str, Any]) -> None:
    """Under callgrind: ``spec["variant"]`` requests, counted between ``ready`` and ``done``."""
    from otel_hardening.outbox import Outbox, OutboxPolicy

    variant, n, gate = spec["variant"], spec["requests"], spec["gate"]
    tmp = _scratch()
    outbox = None
    if variant != "plain":
        outbox = Outbox(os.path.join(tmp, "o.sqlite3"), name="bench", policy=OutboxPolicy(strip_headers=frozenset()))
    client = _client(outbox if variant == "get_via_outbox" else None)
    url = "http://upstream.test/item"
    for _ in range(WARMUP):
        client.get(url)
    _worker.wait(gate, "ready", "go")
    for _ in range(n):
        client.get(url)
    _worker.wait(gate, "done", "stop")
    print(json.dumps({"variant": variant, "requests": n}), flush=True)
    if outbox is not None:
        outbox.close()


def instructions(quick: bool) -> dict[str, Any]:
    from bench import _callgrind

    why = _callgrind.available()
    if why is not None:
        print(f"bench.outbox: instruction counts skipped: {why}", file=sys.stderr)
        return {"skipped": why}
    n = 500 if quick else REQUESTS
    out: dict[str, Any] = {"requests": n}
    for variant in ("plain", "plain_beside_outbox", "get_via_outbox"):
        result = _callgrind.instructions("bench.outbox", {"variant": variant, "requests": n})
        out[variant] = result["instructions"] / n
    out["beside_ratio"] = out["plain_beside_outbox"] / out["plain"]
    out["get_via_outbox_ratio"] = out["get_via_outbox"] / out["plain"]
    return out


def _scratch() -> str:
    """A directory for a sqlite store, removed when the process exits (each run made a new one)."""
    tmp = tempfile.mkdtemp(prefix="bench-outbox-")
    atexit.register(shutil.rmtree, tmp, True)
    return tmp


def _store_urls() -> list[tuple[str, str]]:
    tmp = _scratch()
    urls = [("sqlite", os.path.join(tmp, "o.sqlite3"))]
    redis_url = os.environ.get("BENCH_OUTBOX_REDIS")
    if redis_url:
        urls.append(("redis", redis_url))
    return urls


def deferral_and_replay(quick: bool) -> dict[str, Any]:
    from otel_hardening.http.errors import CircuitOpenError
    from otel_hardening.outbox import Outbox, OutboxPolicy, RequestDeferred

    n = 100 if quick else 1000
    down = "http://down.test/w"
    baseline = _client()
    with contextlib.suppress(httpx.ConnectError):
        baseline.post(down, content=b"x")  # opens the circuit: from now on no I/O is tried
    result: dict[str, Any] = {"entries": n}
    plain: list[float] = []
    for _ in range(n):
        t = time.perf_counter()
        with contextlib.suppress(CircuitOpenError):
            baseline.post(down, content=b'{"order": 1}')
        plain.append(time.perf_counter() - t)
    result["circuit_open_without_outbox_us"] = statistics.median(plain) * 1e6
    for name, url in _store_urls():
        outbox = Outbox(url, name="bench", policy=OutboxPolicy(strip_headers=frozenset(), max_entries=10 * n),
                        replay=False)
        outbox.store.purge(dead=False)
        client = _client(outbox)  # the same policies: the same (open) circuit
        times: list[float] = []
        for _ in range(n):
            t = time.perf_counter()
            with contextlib.suppress(RequestDeferred):
                client.post(down, content=b'{"order": 1}')
            times.append(time.perf_counter() - t)
        result[f"deferral_{name}_us"] = statistics.median(times) * 1e6
        result[f"deferral_{name}_p99_us"] = sorted(times)[int(0.99 * (n - 1))] * 1e6
        replayer = Outbox(outbox.store, name="bench", policy=OutboxPolicy(strip_headers=frozenset()),
                          replay_client=_client(fail_max=10**6, answer=_ok),  # another circuit: closed
                          replay=False).replayer
        t = time.perf_counter()
        while outbox.store.stats().pending:
            replayer.round()
        result[f"replay_{name}_us"] = (time.perf_counter() - t) / n * 1e6
        outbox.close()
    return result


def measure(quick: bool, instructions_too: bool = True, deferrals_too: bool = True) -> dict[str, Any]:
    report: dict[str, Any] = {"mode": "quick" if quick else "full",
                              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    if deferrals_too:
        report["deferral_and_replay"] = deferral_and_replay(quick)
    if instructions_too:
        report["instructions"] = instructions(quick)
    return report


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1].startswith("{"):
        spec = json.loads(sys.argv[1])
        if "variant" in spec:  # one callgrind worker
            worker(spec)
        else:  # a section of ``python -m bench``: the report as its last JSON line
            print(json.dumps(measure(bool(spec.get("quick")))), flush=True)
        return
    report = measure("--quick" in sys.argv, deferrals_too="--instructions-only" not in sys.argv)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

"""Issue 19's features on the request path: instructions per hardened GET with each one off and on.

``python -m bench.features [--quick]`` prints a JSON report; ``python -m bench`` runs it as its
``features`` section (bench/report.py renders it). Instructions per request come from callgrind (the
machinery of bench/_callgrind.py, as bench/outbox.py uses it), one process per variant, the variants
interleaved over rounds; figures are medians (differences: of each round's). Variants, set through the
environment as users set them:

- ``plain``: the same client, not hardened: ``off`` minus ``plain`` is the layer's own cost;
- ``off``: hardened, slow-request detection off (``OTEL_PYTHON_HARDENING_SLOW_REQUEST=off``) and no
  attempt a network quality sample (``QUALITY_WINDOW=1h``: one sample per 18 s, none in a run);
- ``slow``: slow-request detection on (the default 5 s threshold; no call is that slow);
- ``quality``: network quality at its default (one sampled attempt per upstream every 0.3 s; under
  callgrind's ~50x slowdown that is ~50x more often per request than natively);
- ``quality_every``: every attempt a sample (``QUALITY_WINDOW=1ms``): what each sampled attempt costs, and
  the per-request cost of an upstream called less often than every 0.3 s;
- ``all``: slow detection and quality at their defaults (the goal is judged on it); ``all_every``: with
  every attempt sampled.

The connection-pool metrics have no switch: they are read at collection time, and on the request path
add a ``len()`` at pool entry and a test at the first write, in every hardened variant ("off" included).
Requests go through httpx's own ``HTTPTransport`` and httpcore pool (so the layer's pool hooks run) over
an in-memory network backend answering 200 on one keep-alive connection: no sockets, no noise from them.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpcore
import httpx

from bench import _callgrind, _variants, _worker
from bench.overhead import CALLGRIND_ENV

VARIANTS = ("plain", "off", "slow", "quality", "quality_every", "all", "all_every")
LABELS = {"plain": "not hardened", "off": "hardened: slow detection off, no quality sample",
          "slow": "slow detection on (5 s)", "quality": "network quality (default sampling)",
          "quality_every": "network quality, every attempt sampled", "all": "all on (defaults)",
          "all_every": "all on, every attempt sampled"}
# Every variant sets both variables to values of one length (defaults spelled out, "5s " parses as 5 s):
# the environment's size moves the heap's layout, and with it id()-hashed lookups (context variables)
# by up to ~1,000 instructions per request, as much as what is measured here.
_SLOW = "OTEL_PYTHON_HARDENING_SLOW_REQUEST"
_WINDOW = "OTEL_PYTHON_HARDENING_QUALITY_WINDOW"
ENV: dict[str, dict[str, str]] = {
    "plain": {_SLOW: "5s ", _WINDOW: "60s"}, "off": {_SLOW: "off", _WINDOW: "1h "},
    "slow": {_SLOW: "5s ", _WINDOW: "1h "}, "quality": {_SLOW: "off", _WINDOW: "60s"},
    "quality_every": {_SLOW: "off", _WINDOW: "1ms"}, "all": {_SLOW: "5s ", _WINDOW: "60s"},
    "all_every": {_SLOW: "5s ", _WINDOW: "1ms"}}
_PAD = "BENCH_LAYOUT_PAD"
"""Each round pads the environment by another length, the same for every variant: the rounds sample
several heap layouts and each round's differences compare like with like."""
GOAL_PCT = 2.0
"""Issue 19: the features may add at most this share of the layer's own instructions per request."""
BUSY_RATE = 100.0
"""Requests a second to one upstream at which the goal is judged. Per-request cost matters on a busy
upstream; there the default samples one attempt per spacing (0.3 s), not the ~50x more that callgrind's
slowdown makes it sample, so the judged cost is the slow check plus a sampled attempt's cost times the
share of attempts sampled at this rate. An upstream called less often than once per spacing samples
every attempt (the ``all_every`` row): its per-request cost is higher, over a few requests a second."""


def judged(added: dict[str, float], layer: float) -> dict[str, float]:
    """The defaults' added cost per request at :data:`BUSY_RATE` (see there)."""
    from otel_hardening.config import QualityPolicy
    from otel_hardening.http.quality import MAX_SAMPLES

    share = min(1.0, 1.0 / (QualityPolicy().window / MAX_SAMPLES * BUSY_RATE))
    cost = added["slow"] + share * added["quality_every"]
    return {"rate": BUSY_RATE, "sampled_share": share, "added": cost, "pct": cost / layer * 100}
URL = "http://upstream.test/bench"
_ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class CannedStream(httpcore.NetworkStream):
    """A keep-alive connection that answers every request it is sent with 200 ``ok``."""

    def __init__(self) -> None:
        self._pending = b""

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        out, self._pending = self._pending, b""
        return out

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._pending = _ANSWER

    def close(self) -> None:
        pass

    def get_extra_info(self, info: str) -> Any:
        return False if info == "is_readable" else None


class CannedBackend(httpcore.NetworkBackend):
    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Any = None) -> httpcore.NetworkStream:
        return CannedStream()


def client(hardened: bool) -> httpx.Client:
    """httpx's own transport and pool over the canned backend; hardened by the environment's settings."""
    transport = httpx.HTTPTransport()
    transport._pool._network_backend = CannedBackend()
    made = httpx.Client(transport=transport)
    if hardened:
        import otel_hardening

        otel_hardening.harden(made)
    return made


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Under callgrind: ``spec["requests"]`` GETs, counted between ``ready`` and ``done``."""
    _variants.sdk(3600.0)
    variant, n, gate = spec["variant"], spec["requests"], spec.get("gate")
    get = client(variant != "plain").get
    for _ in range(spec["warmup"]):
        assert get(URL).status_code == 200
    _worker.wait(gate, "ready", "go")
    for _ in range(n):
        get(URL)
    _worker.wait(gate, "done", "stop")
    return {"variant": variant, "requests": n}


def measure(quick: bool) -> dict[str, Any]:
    why = _callgrind.available()
    if why is not None:
        return {"skipped": why}
    n, rounds = (300, 1) if quick else (600, 3)
    jobs = [(r, v) for r in range(rounds) for v in VARIANTS[r % len(VARIANTS):] + VARIANTS[:r % len(VARIANTS)]]
    started = time.monotonic()

    def one(job: tuple[int, str]) -> tuple[str, float]:
        r, variant = job
        spec = {"variant": variant, "requests": n, "warmup": 200}
        env = {**CALLGRIND_ENV, **ENV[variant], _PAD: "x" * (97 * r)}
        return variant, _callgrind.instructions("bench.features", spec, env)["instructions"] / n

    runs: dict[str, list[float]] = {v: [] for v in VARIANTS}
    with ThreadPoolExecutor(2) as pool:  # valgrind runs one core per process; counts do not care
        for variant, count in pool.map(one, jobs):  # in job order: runs[v][r] is round r's
            runs[variant].append(count)
    per = {v: statistics.median(runs[v]) for v in VARIANTS}
    layer = statistics.median(x - y for x, y in zip(runs["off"], runs["plain"], strict=True))
    added = {v: statistics.median(x - y for x, y in zip(runs[v], runs["off"], strict=True)) for v in VARIANTS[2:]}
    return {"mode": "quick" if quick else "full", "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "requests": n, "rounds": rounds, "seconds": time.monotonic() - started, "per_request": per,
            "runs": runs, "layer": layer, "added": added,
            "added_pct": {v: a / layer * 100 for v, a in added.items()}, "judged": judged(added, layer)}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1].startswith("{"):
        spec = json.loads(sys.argv[1])
        if "variant" in spec:  # one callgrind worker
            print(json.dumps(worker(spec)), flush=True)
        else:  # a section of ``python -m bench``: the report as its last JSON line
            print(json.dumps(measure(bool(spec.get("quick")))), flush=True)
        return
    print(json.dumps(measure("--quick" in sys.argv), indent=2))


if __name__ == "__main__":
    main()

"""``python -m bench [--quick | --full] [--out DIR] [--only SECTION,...] [--readme]``

Runs the benchmark suite (see ``bench/__init__.py``), writes ``results.json`` and ``results.md`` to
``--out`` (default ``bench/results/``) and, with ``--readme``, regenerates docs/performance.md's
block and the README's one-line summary from them. Exits non-zero only when a benchmark crashed; a
goal that does not hold is reported in the table, not as a failure.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import _proc, _upstream, collector_outage, overhead, report

HERE = Path(__file__).resolve().parent
SECTIONS = ("timing", "instructions", "layer", "profile", "faults", "collector", "resources", "scale", "outbox",
            "features")
PACKAGES = ("httpx", "httpcore", "opentelemetry-sdk", "opentelemetry-instrumentation-httpx", "pybreaker",
            "stamina")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0]
    return f"{os.cpu_count()} x {model}, {platform.system()} {platform.release()}, load average {load:.1f} at start"


def versions() -> str:
    parts = [f"Python {platform.python_version()}"]
    for name in PACKAGES:
        try:
            parts.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{name} (not installed)")
    sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True,
                         check=False).stdout.strip()
    parts.append(f"otel-hardening {metadata.version('otel-hardening')} ({sha or 'no git'})")
    return ", ".join(parts)


def run(quick: bool, only: tuple[str, ...]) -> tuple[dict[str, Any], list[str]]:
    plan = overhead.QUICK if quick else overhead.FULL
    results: dict[str, Any] = {}
    crashes: list[str] = []
    started = time.monotonic()
    meta: dict[str, Any] = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "mode": "quick" if quick else "full", "machine": machine(), "versions": versions(),
            "rounds": plan.rounds}
    results["meta"] = meta
    with _upstream.running() as upstream, _upstream.running(overhead.SLOW_UPSTREAM_MS) as slow:
        meta["upstream"] = (f"{'Go (bench/upstream-go)' if upstream.kind == 'go' else 'Python (bench/upstream.py)'}"
                            ", own process, loopback keep-alive")
        steps: dict[str, Callable[[], dict[str, Any]]] = {
            "timing": lambda: overhead.timing({"fast": upstream.url, "slow": slow.url}, plan, log),
            "instructions": lambda: overhead.instructions(upstream.url, plan, log),
            "layer": lambda: overhead.layer(plan, log),
            "profile": lambda: overhead.profile(upstream.url, plan),
            "faults": lambda: _proc.run_json("bench.faults", {"quick": quick}),
            "collector": lambda: collector_outage.run(upstream.url, quick, log),
            "resources": lambda: _proc.run_json("bench.resources_overhead", {"quick": quick}),
            "scale": lambda: _scale(quick),
            "outbox": lambda: _proc.run_json("bench.outbox", {"quick": quick}),
            "features": lambda: _proc.run_json("bench.features", {"quick": quick}, timeout=1800.0),
        }
        def one(name: str) -> None:
            log(f"{name} ...")
            try:
                results[name] = steps[name]()
            except Exception:
                crashes.append(name)
                log(f"{name} CRASHED:\n{traceback.format_exc()}")

        # Quick mode only checks that nothing crashes: its sections overlap, to stay under 2 minutes.
        with ThreadPoolExecutor(3 if quick else 1) as pool:
            list(pool.map(one, only))
    meta["seconds"] = time.monotonic() - started
    meta["crashed"] = crashes
    return results, crashes


def _scale(quick: bool) -> dict[str, Any]:
    if not (HERE / "scale.py").exists():
        return {"skipped": "bench/scale.py is not there yet"}
    return _proc.run_json("bench.scale", {"quick": quick})


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description="otel-hardening benchmark suite")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help="every benchmark once, small (< 2 min; CI)")
    group.add_argument("--full", action="store_true", help="the full run behind the README (~15 min)")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="where results.json/.md go")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    parser.add_argument("--readme", action="store_true",
                        help="regenerate docs/performance.md's block and the README's one-line summary")
    args = parser.parse_args()
    only = tuple(s.strip() for s in args.only.split(",") if s.strip())
    unknown = sorted(set(only) - set(SECTIONS))
    if unknown:
        parser.error(f"--only: unknown section(s) {unknown}; accepted: {', '.join(SECTIONS)}")
    results, crashes = run(quick=not args.full, only=only)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    table = report.markdown(results)
    (args.out / "results.md").write_text(table)
    print(table)
    log(f"wrote {args.out / 'results.json'} and {args.out / 'results.md'}")
    if args.readme:
        report.update_docs(results)
        log("docs/performance.md block and README.md summary regenerated")
    if crashes:
        log(f"CRASHED: {', '.join(crashes)}")
        sys.exit(1)


if __name__ == "__main__":
    main()

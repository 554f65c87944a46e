"""Real leaking subprocesses (the scenarios of bench/leak_detection.py, same short-window config):
``hardening.resource.leak.suspected`` flips to 1 for the leaking resource only, the automatic hunt
ranks the leaking line first, and a sawtooth flips nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "leak_detection.py"
CASES = {"steady leak": 15.0, "fd leak": 15.0, "thread leak": 15.0, "asyncio task leak": 15.0, "sawtooth": 6.0}
# Half the benchmark's window, so the suite stays quick; the sawtooth cycle shrinks with it so that each
# of the detector's four blocks still holds two cycles.
FASTER = {
    "OTEL_PYTHON_HARDENING_RESOURCE_INTERVAL": "0.05",
    "OTEL_PYTHON_HARDENING_LEAK_WINDOW": "3",
    "OTEL_PYTHON_HARDENING_LEAK_WARMUP": "0.5",
    "LEAK_BENCH_SAWTOOTH_PERIOD": "0.3",
}


def _run(name: str) -> dict[str, Any]:
    sys.path.insert(0, str(BENCH.parent))
    import leak_detection

    env = {**os.environ, **leak_detection.ENV, **FASTER, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, str(BENCH), "--child", name, "--seconds", str(CASES[name])],
                         env=env, capture_output=True, text=True, timeout=120, check=True)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


@pytest.fixture(scope="module")
def results() -> dict[str, dict[str, Any]]:
    with ThreadPoolExecutor(len(CASES)) as pool:
        return dict(zip(CASES, pool.map(_run, CASES), strict=True))


def test_memory_leak_flips_and_the_hunt_names_the_leaking_line(results: dict[str, dict[str, Any]]) -> None:
    res = results["steady leak"]
    assert set(res["flips"]) == {"memory"}
    assert res["top"] == {"file": res["file"], "line": res["leak_line"]}


@pytest.mark.parametrize(("name", "resource"), [("fd leak", "fds"), ("thread leak", "threads"),
                                                ("asyncio task leak", "tasks")])
def test_count_leaks_are_seen(results: dict[str, dict[str, Any]], name: str, resource: str) -> None:
    assert resource in results[name]["flips"]
    assert "fds" not in results[name]["flips"] or resource == "fds"


def test_sawtooth_is_not_a_leak(results: dict[str, dict[str, Any]]) -> None:
    assert results["sawtooth"]["flips"] == {}


def test_no_thread_left_after_stop(results: dict[str, dict[str, Any]]) -> None:
    assert all(res["threads_after_stop"] == [] for res in results.values())

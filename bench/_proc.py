"""Run one benchmark piece in its own process and read the JSON line it prints last."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


class BenchCrash(RuntimeError):
    """A benchmark process failed: the only thing that makes ``python -m bench`` exit non-zero."""


def run_json(module: str, spec: dict[str, Any], timeout: float = 900.0) -> dict[str, Any]:
    """``python -m module '<spec as JSON>'`` in a fresh process; its last JSON line."""
    argv = [sys.executable, "-m", module, json.dumps(spec)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env,
                              stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired as exc:
        raise BenchCrash(f"{module} {spec} timed out after {timeout:.0f}s") from exc
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise BenchCrash(f"{module} {json.dumps(spec)} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def child_main(measure: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """``python -m bench.X '<json spec>'``: print ``measure(spec)`` as the last JSON line."""
    spec = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    print(json.dumps(measure(spec)), flush=True)

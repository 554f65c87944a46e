"""Instructions per request with valgrind's callgrind (no hardware counters on these VMs).

The worker starts under ``valgrind --tool=callgrind --instr-atstart=no`` (so imports and set-up run
uninstrumented, and fast), warms up, prints ``ready`` and waits; we switch instrumentation on with
``callgrind_control -i on PID``, let it run the requests, switch it off when it prints ``done``.
The total ``Ir`` is then the instructions of those requests, on every thread of the process
(background span export and metric collection included). Instruction counts barely move with
machine load, unlike CPU time.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench._proc import ROOT

_IR = re.compile(r"I\s+refs:\s+([\d,]+)")


def available() -> str | None:
    """None when callgrind can run here, else why not."""
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian: apt-get install valgrind)"
    return None


def _control(pid: int, switch: str) -> None:
    subprocess.run(["callgrind_control", "-i", switch, str(pid)], check=True, capture_output=True, timeout=120)


def instructions(module: str, spec: dict[str, Any], env: dict[str, str] | None = None,
                 timeout: float = 900.0) -> dict[str, Any]:
    """Run ``python -m module <spec>`` under callgrind; its result plus ``instructions`` (total Ir)."""
    with tempfile.TemporaryDirectory(prefix="bench-cg-") as gate:
        spec = {**spec, "gate": gate}
        argv = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={gate}/out",
                sys.executable, "-m", module, json.dumps(spec)]
        env = {**os.environ, **(env or {}), "PYTHONHASHSEED": "0", "PYTHONPATH": str(ROOT)}
        with open(f"{gate}/stderr", "w+") as err:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL,
                                    text=True, cwd=ROOT, env=env)
            try:
                result = _drive(proc, gate)
                proc.wait(timeout)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            err.seek(0)
            log = err.read()
        match = _IR.search(log)
        if proc.returncode != 0 or match is None or result is None:
            raise RuntimeError(f"callgrind run of {module} failed (exit {proc.returncode}):\n{log[-2000:]}")
        return {**result, "instructions": int(match.group(1).replace(",", ""))}


def _drive(proc: subprocess.Popen[str], gate: str) -> dict[str, Any] | None:
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.strip()
        if line == "ready":
            _control(proc.pid, "on")
            Path(gate, "go").touch()
        elif line == "done":
            _control(proc.pid, "off")
            Path(gate, "stop").touch()
        elif line.startswith("{"):
            result: dict[str, Any] = json.loads(line)
            return result
    return None

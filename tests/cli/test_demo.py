"""The README's first command: `otel-hardening demo` walks every phase, and what it prints is what the
library measured (each phase's check passes), with OTLP export configured and nothing listening."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from otel_hardening.stack import free_port
from otel_hardening.testing import closed_port

PHASES = ("healthy", "burst", "outage", "recovery", "leak")
ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _health(port: int) -> dict[str, object] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return dict(json.loads(response.read()))
    except urllib.error.HTTPError as exc:  # 503 while critical: the document is in the body
        return dict(json.loads(exc.read()))
    except OSError:
        return None


def test_demo_walks_every_phase_and_the_library_shows_each(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{closed_port()}",
           "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "PYTHONWARNINGS": "default"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "otel_hardening.cli", "demo", "--duration", "20", "--plain",
         "--health-endpoint", str(port)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    documents = []
    try:
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            doc = _health(port)
            if doc is not None:
                documents.append(doc)
            time.sleep(0.5)
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    report = f"--- stdout\n{out}\n--- stderr\n{err}"
    assert proc.returncode == 0, report
    assert "Traceback" not in out + err, report

    headers = re.findall(r"^=== phase (\d)/5: (\w+)", out, re.M)
    assert [name for _, name in headers] == list(PHASES), report
    for phase in PHASES:
        assert re.search(rf"^\| {phase} +\|", out, re.M), f"no summary row for {phase}\n{report}"
        assert re.search(rf"^PASS  {phase} ", out, re.M), f"{phase}: its check did not pass\n{report}"
    assert re.search(r"^the hunt's top site: .*otel_hardening/demo/_leak\.py:\d+ ", out, re.M), report

    # the live health endpoint served the library's report, with its checks, while the demo ran
    assert documents, report
    assert {d["status"] for d in documents} <= {"pass", "warn", "fail"}
    assert any(d["status"] == "fail" for d in documents), [d["status"] for d in documents]  # the outage
    assert any("checks" in d for d in documents)

    # nothing listens at the OTLP endpoint: said once, counted after, never a flood
    assert len(re.findall(r"OTLP export problem \(further", out)) == 1, report
    assert re.search(r"^OTLP export problems: \d+", out, re.M), report  # counted in the summary
    assert len(err.strip().splitlines()) <= 2, report


def test_live_view_renders_what_was_measured(tmp_path: Path) -> None:
    """Without --plain: the rich view (its last frame, when stdout is not a terminal) and the summary."""
    env = {**os.environ, "COLUMNS": "140"}
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    result = subprocess.run(
        [sys.executable, "-m", "otel_hardening.cli", "demo", "--duration", "10", "--phases", "healthy,outage"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "Traceback" not in out + result.stderr
    assert re.search(r"phase 2/2: outage", out), out
    for label in ("upstream", "inventory", "payments", "health", "memory", "leak", "hunt", "otel_hardening log"):
        assert label in out, f"{label!r} missing from the live view:\n{out}"
    assert re.search(r"circuit payments \w+ -> open", out), out  # the library's own log record, shown
    assert re.search(r"^PASS  outage ", out, re.M), out
    assert "=== phase" not in out  # plain lines are for --plain only

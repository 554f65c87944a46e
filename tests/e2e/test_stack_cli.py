"""`python -m otel_hardening.stack up|status|down` as a user runs it: processes outlive `up`, `status`
sees them ready, `down` stops exactly those processes and keeps the logs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import psutil
import pytest

from otel_hardening.stack._render import OPTIONAL
from tests.e2e.conftest import ROOT, skip_without

pytestmark = pytest.mark.e2e


def _cli(run_dir: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "otel_hardening.stack", *args, "--run-dir", str(run_dir)],
        capture_output=True, text=True, timeout=120, env=env, cwd=ROOT, check=False,
    )


def test_up_status_down(stack_tools: Path, tmp_path: Path) -> None:
    """The lean stack (no Jaeger, VictoriaLogs): the full one is exercised by test_trace_log_search."""
    env = {**os.environ, "OTELCOL_BIN": str(stack_tools)}
    run_dir = tmp_path / "stack"
    without = [arg for name in OPTIONAL for arg in ("--without", name)]
    up = _cli(run_dir, "up", "--scrape-interval", "1s", *without, env=env)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:" in up.stdout
        for name in ("prometheus", "alertmanager"):
            assert f"{name}:" in up.stdout, up.stdout
        assert "jaeger" not in up.stdout.lower() and "logs API" not in up.stdout, up.stdout
        assert "grafana:" in up.stdout and "not run here" in up.stdout, up.stdout
        state = json.loads((run_dir / "stack.json").read_text())
        pids = {name: proc["pid"] for name, proc in state["procs"].items()}
        assert set(pids) == {"collector", "prometheus", "alertmanager"}
        assert all(psutil.pid_exists(pid) for pid in pids.values())

        status = _cli(run_dir, "status", env=env)
        assert status.returncode == 0, status.stdout + status.stderr
        assert status.stdout.count("ready") == 3, status.stdout

        again = _cli(run_dir, "up", env=env)
        assert again.returncode == 1 and "already recorded" in again.stderr
    finally:
        down = _cli(run_dir, "down", env=env)
    assert down.returncode == 0, down.stdout + down.stderr
    for name, pid in pids.items():
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, name
    assert (run_dir / "collector.log").stat().st_size > 0
    assert not (run_dir / "stack.json").exists()
    assert _cli(run_dir, "status", env=env).returncode == 1


@pytest.mark.parametrize("name", OPTIONAL)
def test_missing_component_is_one_clear_line(stack_tools: Path, tmp_path: Path, name: str) -> None:
    """No binary for a component the user did not leave out: one line naming the build command and
    --without, exit 1, nothing started."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_HARDENING_")}
    env |= {"OTELCOL_BIN": str(stack_tools), "OTELCOL_CACHE_DIR": str(tmp_path / "empty-cache")}
    others = [arg for other in OPTIONAL if other != name for arg in ("--without", other)]
    run_dir = tmp_path / "stack"
    up = _cli(run_dir, "up", *others, env=env)
    assert up.returncode == 1, up.stdout + up.stderr
    lines = up.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in up.stderr, up.stderr
    assert f"tools/build-component.sh {name}" in lines[0] and f"--without {name}" in lines[0], lines[0]
    assert not (run_dir / "stack.json").exists()


def test_up_prints_the_backends_urls_and_they_answer(stack_tools: Path, tmp_path: Path) -> None:
    """With Jaeger and VictoriaLogs built: `up` prints the Jaeger query API, the LogsQL API and
    VictoriaLogs' web UI, each of which answers, says that Jaeger serves no UI, and where Grafana is."""
    skip_without("jaeger", "victorialogs")
    env = {**os.environ, "OTELCOL_BIN": str(stack_tools)}
    run_dir = tmp_path / "stack"
    up = _cli(run_dir, "up", env=env)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        printed = dict(line.split(":", 1) for line in up.stdout.splitlines() if line[:1].strip() and ":" in line)
        urls = {name: value.strip() for name, value in printed.items()}
        with urllib.request.urlopen(urls["jaeger API"].replace("/api/traces", "/api/services"), timeout=10) as r:
            assert json.load(r)["errors"] is None
        query = urllib.parse.urlencode({"query": "*", "limit": "1"})
        with urllib.request.urlopen(f"{urls['logs API']}?{query}", timeout=10) as r:
            assert r.status == 200
        with urllib.request.urlopen(urls["logs web UI"], timeout=10) as r:
            assert "<html" in r.read().decode(errors="replace").lower()
        assert "serves no web UI" in up.stdout, up.stdout
        assert urls["grafana"].startswith("not run here") and str(run_dir / "grafana" / "provisioning") in up.stdout
        provisioned = json.loads((run_dir / "grafana/provisioning/datasources/datasources.yaml").read_text())
        by_uid = {d["uid"]: d["url"] for d in provisioned["datasources"]}
        assert by_uid["jaeger"] == urls["jaeger API"].removesuffix("/api/traces")
        assert by_uid["victorialogs"] == urls["logs API"].removesuffix("/select/logsql/query")
    finally:
        down = _cli(run_dir, "down", env=env)
    assert down.returncode == 0, down.stdout + down.stderr

"""`otel-hardening stack` on the real collector, Prometheus and Alertmanager: status reprints the URLs,
a second `up` is one line, the demo's OTLP export arrives (metrics, traces, the leak report), `down`
stops it."""

from __future__ import annotations

from pathlib import Path

import pytest

from otel_hardening.stack._render import OPTIONAL
from tests.cli.test_commands import cli, one_line_error
from tests.e2e.conftest import (  # noqa: F401  (collector_bin, stack_tools: fixtures that skip loudly)
    collector_bin,
    prom_query,
    stack_tools,
    wait_for,
)

pytestmark = pytest.mark.e2e


def test_up_status_reprints_urls_second_up_is_one_line_down(stack_tools: Path, tmp_path: Path) -> None:  # noqa: F811
    env = {"OTELCOL_BIN": str(stack_tools), "OTEL_HARDENING_REPO": ""}
    run_dir = str(tmp_path / "stack")
    without = [arg for name in OPTIONAL for arg in ("--without", name)]
    up = cli("stack", "up", "--run-dir", run_dir, *without, "--scrape-interval", "1s", "--decision-wait", "1s",
             env=env, timeout=180)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        urls = [line for line in up.stdout.splitlines() if "http://127.0.0.1:" in line]
        assert any(line.startswith("prometheus:") for line in urls), up.stdout

        status = cli("stack", "status", "--run-dir", run_dir, env=env)
        assert status.returncode == 0, status.stdout + status.stderr
        for line in urls:
            assert line in status.stdout, f"{line!r} not reprinted:\n{status.stdout}"

        again = cli("stack", "up", "--run-dir", run_dir, *without, env=env)
        assert "already" in one_line_error(again)

        _demo_exports_to(up.stdout, env)
    finally:
        down = cli("stack", "down", "--run-dir", run_dir, env=env)
    assert down.returncode == 0, down.stdout + down.stderr
    gone = cli("stack", "status", "--run-dir", run_dir, env=env)
    assert gone.returncode != 0


def _demo_exports_to(printed: str, env: dict[str, str]) -> None:
    """The demo with OTEL_EXPORTER_OTLP_ENDPOINT from `up`: everything arrives, nothing complains."""
    endpoint = next(line.split("=", 1)[1] for line in printed.splitlines()
                    if line.startswith("OTEL_EXPORTER_OTLP_ENDPOINT="))
    prometheus = next(line.split()[1] for line in printed.splitlines() if line.startswith("prometheus:"))
    traces, logs = (Path(p.strip()) for p in next(
        line.split(None, 1)[1] for line in printed.splitlines() if line.startswith("copies:")).split(","))
    demo = cli("demo", "--duration", "20", "--plain", timeout=180,
               env={**env, "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_SERVICE_NAME": "cli-demo"})
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "OTLP export problem" not in demo.stdout, demo.stdout
    calls = wait_for(lambda: prom_query(prometheus, 'hardening_http_client_calls_total{job="cli-demo"}'),
                     60, what="the demo's call counters in Prometheus")
    assert {c["metric"].get("hardening_outcome") for c in calls} >= {"success", "rejected_circuit_open"}
    wait_for(lambda: traces.is_file() and "hardening.request" in traces.read_text(), 60,
             what="the demo's retried requests in the exported traces")
    wait_for(lambda: logs.is_file() and "hardening.leak.hunt.trigger" in logs.read_text(), 60,
             what="the demo's leak report in the exported logs")

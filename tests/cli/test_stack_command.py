"""`otel-hardening stack` on the real collector, Prometheus and Alertmanager: status reprints the URLs,
a second `up` is one line, `down` stops it."""

from __future__ import annotations

from pathlib import Path

import pytest

from otel_hardening.stack._render import OPTIONAL
from tests.cli.test_commands import cli, one_line_error
from tests.e2e.conftest import collector_bin, stack_tools  # noqa: F401  (fixtures: skip loudly when not built)

pytestmark = pytest.mark.e2e


def test_up_status_reprints_urls_second_up_is_one_line_down(stack_tools: Path, tmp_path: Path) -> None:  # noqa: F811
    env = {"OTELCOL_BIN": str(stack_tools), "OTEL_HARDENING_REPO": ""}
    run_dir = str(tmp_path / "stack")
    without = [arg for name in OPTIONAL for arg in ("--without", name)]
    up = cli("stack", "up", "--run-dir", run_dir, *without, env=env, timeout=180)
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
    finally:
        down = cli("stack", "down", "--run-dir", run_dir, env=env)
    assert down.returncode == 0, down.stdout + down.stderr
    gone = cli("stack", "status", "--run-dir", run_dir, env=env)
    assert gone.returncode != 0

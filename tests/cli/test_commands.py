"""`otel-hardening` as a user types it: every mistake is one line on stderr and a non-zero exit."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import otel_hardening
from otel_hardening.cli import main
from otel_hardening.testing import FlakyUpstream, Reply, closed_port

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "otel_hardening.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd or ROOT, env={**os.environ, **(env or {})}, check=False)


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_console_script_is_installed() -> None:
    script = shutil.which("otel-hardening", path=str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])
    assert script is not None
    result = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0
    assert result.stdout.strip() == f"otel-hardening {otel_hardening.__version__}"


@pytest.mark.parametrize(("args", "expected"), [
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["demo", "--duration", "soon"], "'soon' is not a number of seconds"),
    (["demo", "--duration", "-3"], "expected a number of seconds > 0"),
    (["demo", "--duration", "5"], "at least 10 seconds"),
    (["demo", "--phases", "healthy,panic"],
     "expected a comma-separated list of healthy, burst, outage, recovery, saturation, leak"),
    (["demo", "--health-endpoint", "eighty"], "expected PORT or HOST:PORT"),
    (["demo", "--health-endpoint", "70000"], "port must be 0-65535"),
    (["demo", "--time-scale", "0.5"], "expected a number >= 1"),
    (["stack"], "expected one of up, status, down"),
    (["stack", "sideways"], "expected one of up, status, down, got 'sideways'"),
    (["dashboards", "paint"], "invalid choice: 'paint'"),
])
def test_bad_input_is_one_line(args: list[str], expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(args)  # in-process: each of these fails before anything starts
    captured = capsys.readouterr()
    line = one_line_error(subprocess.CompletedProcess(args, status, captured.out, captured.err))
    assert line.startswith("otel-hardening"), line
    assert expected in line, line


def test_demo_health_port_in_use_is_one_line() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        line = one_line_error(cli("demo", "--duration", "20", "--health-endpoint", str(port)))
    assert f"--health-endpoint 127.0.0.1:{port}: cannot listen there" in line, line


def test_demo_with_otlp_endpoint_but_no_exporter_says_what_to_install(tmp_path: Path) -> None:
    # a module of the same name that fails to import stands in for an environment without the extra
    fake = tmp_path / "opentelemetry" / "exporter" / "otlp" / "proto" / "grpc"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('not installed', name='opentelemetry.exporter.otlp')\n")
    line = one_line_error(cli("demo", "--duration", "20", env={
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{closed_port()}", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}"}))
    assert "pip install 'otel-hardening[otlp]'" in line, line


def test_stack_help_and_status_without_a_stack(tmp_path: Path) -> None:
    helped = cli("stack", "--help")
    assert helped.returncode == 0, helped.stderr
    assert "up" in helped.stdout and "down" in helped.stdout
    line = one_line_error(cli("stack", "status", "--run-dir", str(tmp_path / "none")))
    assert "no stack recorded" in line, line


def test_stack_up_without_a_collector_says_how_to_build_it(tmp_path: Path) -> None:
    env = {"OTELCOL_CACHE_DIR": str(tmp_path / "empty-cache"), "OTELCOL_BIN": ""}
    result = cli("stack", "up", "--run-dir", str(tmp_path / "stack"), env=env)
    line = one_line_error(result)
    assert "collector" in line and "build.sh" in line, line


def test_health_pretty_prints_a_health_document() -> None:
    doc = {"status": "warn", "output": "payments:circuit: circuit open",
           "checks": {"payments:circuit": [{"status": "fail", "observedValue": "open",
                                             "output": "circuit open: calls are rejected"}],
                      "process:fds": [{"status": "pass", "observedValue": 0.01, "observedUnit": "ratio"}]}}
    with FlakyUpstream() as endpoint:
        endpoint.always(Reply(503, json.dumps(doc).encode(), {"Content-Type": "application/health+json"}))
        result = cli("health", f"127.0.0.1:{endpoint.port}", "--token", "s3cret")
        sent = endpoint.requests[-1]
    assert result.returncode == 1, result.stderr  # degraded
    assert sent.path == "/healthz"
    assert sent.headers.get("Authorization") == "Bearer s3cret"
    out = result.stdout
    assert "degraded" in out and "payments:circuit" in out and "circuit open: calls are rejected" in out
    assert "critical" in out  # the failing check
    assert "s3cret" not in out


def test_health_unreachable_or_not_a_health_endpoint() -> None:
    refused = cli("health", f"http://127.0.0.1:{closed_port()}/healthz")
    assert refused.returncode == 3
    assert "cannot read" in one_line_error(refused)
    with FlakyUpstream() as other:
        other.always(Reply(200, b"<html>hello</html>"))
        wrong = cli("health", f"{other.url}/")
    assert wrong.returncode == 3
    assert "did not answer with JSON" in one_line_error(wrong)

"""The README's first command on a fresh copy of the repo: `./run demo` creates .venv, installs, runs the
demo; a second run reuses the install (the stamp) and starts at once."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _fresh_copy(target: Path) -> Path:
    """The files a clone would have (tracked, plus new files not ignored), as they are now."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def _run(repo: Path, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "OTEL_HARDENING_VENV",
                                                             "OTEL_EXPORTER_OTLP_ENDPOINT")}
    return subprocess.run(["./run", *args], cwd=repo, capture_output=True, text=True, timeout=timeout, env=env,
                          check=False)


@pytest.mark.skipif(shutil.which("git") is None, reason="git is needed to list the repository's files")
def test_run_demo_sets_itself_up_once(tmp_path: Path) -> None:
    repo = _fresh_copy(tmp_path / "otel-hardening")
    first = _run(repo, "demo", "--duration", "20", "--plain", timeout=600)
    report = f"--- stdout\n{first.stdout[-4000:]}\n--- stderr\n{first.stderr[-4000:]}"
    assert first.returncode == 0, report
    assert "creating .venv" in first.stderr and "installing .[otlp]" in first.stderr, report
    assert (repo / ".venv" / "bin" / "otel-hardening").is_file()
    for phase in ("healthy", "burst", "outage", "recovery", "leak"):
        assert f": {phase} (" in first.stdout, report

    second = _run(repo, "demo", "--help", timeout=120)
    assert second.returncode == 0, second.stderr
    assert "--duration" in second.stdout
    assert "installing" not in second.stderr and "creating" not in second.stderr, second.stderr

    bad = _run(repo, "frobnicate", timeout=30)
    assert bad.returncode == 2 and "./run demo" in bad.stderr

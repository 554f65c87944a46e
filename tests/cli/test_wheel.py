"""The wheel works outside a checkout: built from this tree, installed into a fresh venv, run from an
empty directory. The stack's configs inside it are the repo's own files, byte for byte."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STACK_FILES = ("collector/otelcol-config.yaml", "collector/builder-config.yaml", "collector/build.sh",
               "prometheus/prometheus.yml", "alertmanager/alertmanager.yml", "jaeger/jaeger.yaml")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _run(*argv: str | Path, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OTEL_HARDENING_REPO", "PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env=env, check=False)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """(venv bin dir, an empty working directory) with the freshly built wheel installed."""
    tmp = tmp_path_factory.mktemp("wheel")
    dist = tmp / "dist"
    built = _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", dist, ROOT, cwd=tmp)
    assert built.returncode == 0, built.stdout + built.stderr
    wheels = list(dist.glob("otel_hardening-*.whl"))
    assert len(wheels) == 1, wheels
    venv = tmp / "venv"
    made = _run(sys.executable, "-m", "venv", venv, cwd=tmp)
    assert made.returncode == 0, made.stderr
    bin_dir = venv / "bin"
    pip = _run(bin_dir / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check", wheels[0], cwd=tmp)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()
    yield bin_dir, elsewhere


def test_the_stack_configs_ship_as_the_repos_own_files(installed: tuple[Path, Path]) -> None:
    bin_dir, cwd = installed
    found = _run(bin_dir / "python", "-c",
                 "from otel_hardening.stack._paths import repo_root, is_checkout; r = repo_root(); "
                 "print(r); print(is_checkout(r))", cwd=cwd)
    assert found.returncode == 0, found.stderr
    root_text, checkout = found.stdout.split()
    root = Path(root_text)
    assert checkout == "False" and "site-packages" in root.parts, found.stdout
    for name in STACK_FILES:
        assert (root / name).read_bytes() == (ROOT / name).read_bytes(), name
    for folder in ("grafana", "dashboards/build"):
        for source in (ROOT / folder).rglob("*"):
            if source.is_file() and source.suffix != ".md":
                shipped = root / source.relative_to(ROOT)
                assert shipped.is_file() and shipped.read_bytes() == source.read_bytes(), shipped


def test_commands_run_from_the_wheel_outside_a_checkout(installed: tuple[Path, Path]) -> None:
    bin_dir, cwd = installed
    cli = bin_dir / "otel-hardening"
    helped = _run(cli, "stack", "--help", cwd=cwd, timeout=60)
    assert helped.returncode == 0, helped.stderr
    assert "up" in helped.stdout and "status" in helped.stdout

    dashboards = _run(cli, "dashboards", "build", cwd=cwd, timeout=60)
    assert dashboards.returncode != 0
    assert dashboards.stderr.count("\n") == 1 and "needs an otel-hardening checkout" in dashboards.stderr

    plugin = _run(bin_dir / "python", "-c", "import importlib.metadata as m; "
                  "print([e.value for e in m.entry_points(group='pytest11')])", cwd=cwd, timeout=60)
    assert "otel_hardening.testing.pytest_plugin" in plugin.stdout, plugin.stderr

    demo = _run(cli, "demo", "--duration", "20", "--plain", cwd=cwd, timeout=180)
    out = demo.stdout
    assert demo.returncode == 0, out + demo.stderr
    assert "Traceback" not in out + demo.stderr
    for phase in ("healthy", "burst", "outage", "recovery", "leak"):
        assert f": {phase} (" in out, f"phase {phase} missing:\n{out}"

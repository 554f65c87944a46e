"""Where the stack's inputs are: the repository's config files and the built collector binary."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from otel_hardening.stack._process import StackError

_MARKER = Path("collector") / "otelcol-config.yaml"


_PACKAGED = Path(__file__).resolve().parent / "_data"
"""The same folders, copied into the wheel at build time (setup.py); absent in a checkout."""


def repo_root(start: Path | None = None) -> Path:
    """The folder holding collector/, prometheus/ and alertmanager/.

    ``$OTEL_HARDENING_REPO`` wins; else the first parent of ``start`` (default: the working
    directory), then of this module, that has ``collector/otelcol-config.yaml`` (a checkout); else the
    copies shipped in the installed package.
    """
    env = os.environ.get("OTEL_HARDENING_REPO")
    if env:
        root = Path(env).resolve()
        if not (root / _MARKER).is_file():
            raise StackError(f"OTEL_HARDENING_REPO={env} has no {_MARKER}")
        return root
    for base in (start or Path.cwd(), Path(__file__)):
        for candidate in (base.resolve(), *base.resolve().parents):
            if (candidate / _MARKER).is_file():
                return candidate
    if (_PACKAGED / _MARKER).is_file():
        return _PACKAGED
    raise StackError(
        f"cannot find {_MARKER}: run from an otel-hardening checkout, set OTEL_HARDENING_REPO, "
        "or install otel-hardening from a wheel (it ships the configs)"
    )


def is_checkout(root: Path) -> bool:
    """True for a source checkout, False for the configs shipped in the installed package."""
    return root != _PACKAGED


def cache_dir() -> Path:
    """Same rule as collector/build.sh."""
    env = os.environ.get("OTELCOL_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "otel-hardening"


def cached_collector(root: Path) -> Path:
    """Where collector/build.sh puts the binary for the current manifest (and go.sum)."""
    digest = hashlib.sha256()
    digest.update((root / "collector" / "builder-config.yaml").read_bytes())
    lock = root / "collector" / "go.sum"
    if lock.is_file():
        digest.update(lock.read_bytes())
    return cache_dir() / f"otelcol-{digest.hexdigest()[:16]}" / "otelcol-hardening"


def find_collector(root: Path, build: bool = False) -> Path:
    """``$OTELCOL_BIN``, else the cached build of this checkout's manifest; with ``build``, build it."""
    env = os.environ.get("OTELCOL_BIN")
    if env:
        path = Path(env)
        if not os.access(path, os.X_OK):
            raise StackError(f"OTELCOL_BIN={env} is not an executable file")
        return path
    path = cached_collector(root)
    if os.access(path, os.X_OK):
        return path
    if not build:
        how = "collector/build.sh" if is_checkout(root) else f"bash {root / 'collector' / 'build.sh'}"
        raise StackError(
            f"no collector binary at {path}: build it with {how} (needs Go; minutes, once), "
            "or pass --build, or set OTELCOL_BIN"
        )
    script = root / "collector" / "build.sh"
    bash = shutil.which("bash") or "/bin/bash"
    result = subprocess.run([bash, str(script)], stdout=subprocess.PIPE, text=True, check=False)
    if result.returncode != 0:
        raise StackError(f"collector/build.sh failed (exit {result.returncode}); see its output above")
    return Path(result.stdout.strip().splitlines()[-1])


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise StackError(f"{name} not found on PATH (Debian: apt-get install {_PACKAGES.get(name, name)})")
    return path


_PACKAGES = {"prometheus": "prometheus", "prometheus-alertmanager": "prometheus-alertmanager"}

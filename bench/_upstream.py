"""The benchmark upstream: a fixed-response keep-alive HTTP/1.1 server in its own process.

The Go server (``bench/upstream-go``, standard library only) is built once into the cache, keyed by
the sha256 of its source like ``collector/build.sh``; without Go the Python server
(``bench/upstream.py``) is used instead, said loudly, and the result records which one ran.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
GO_SOURCE = HERE / "upstream-go"


def cache_dir() -> Path:
    env = os.environ.get("OTELCOL_CACHE_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "otel-hardening"


def go_binary() -> Path | None:
    """The built Go upstream, building it on first use; None (with a loud line) when Go is missing."""
    digest = hashlib.sha256()
    for name in ("go.mod", "main.go"):
        digest.update((GO_SOURCE / name).read_bytes())
    path = cache_dir() / f"bench-upstream-{digest.hexdigest()[:16]}"
    if path.exists():
        return path
    go = shutil.which("go")
    if go is None:
        loud("Go is not installed: the benchmarks use the Python upstream (bench/upstream.py), "
             "which competes with the client for CPU")
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp.{os.getpid()}")
    env = {**os.environ, "GOTOOLCHAIN": "local", "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod"}
    done = subprocess.run([go, "build", "-trimpath", "-o", str(tmp), "."], cwd=GO_SOURCE, env=env,
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        loud(f"building the Go upstream failed ({done.stderr.strip()[-400:]}): using the Python upstream")
        return None
    tmp.replace(path)
    return path


def loud(message: str) -> None:
    print(f"\n!!! bench: {message}\n", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Upstream:
    url: str
    kind: str
    """``go`` or ``python``."""


@contextlib.contextmanager
def running(delay_ms: int = 0, prefer_go: bool = True) -> Iterator[Upstream]:
    """Start the upstream on a free loopback port; stop it (by its own pid) on exit."""
    binary = go_binary() if prefer_go else None
    if binary:
        argv = [str(binary), "-delay", f"{delay_ms}ms"]
    else:
        argv = [sys.executable, str(HERE / "upstream.py"), "0", str(delay_ms / 1000)]
    env = {**os.environ, "GOMAXPROCS": "1"}  # one core for the server, the other for the client
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=env)
    try:
        assert proc.stdout is not None
        port = proc.stdout.readline().strip()
        if not port.isdigit():
            raise RuntimeError(f"the benchmark upstream did not print its port ({argv[0]})")
        yield Upstream(f"http://127.0.0.1:{port}/bench", "go" if binary else "python")
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def dead_port() -> int:
    """A loopback port nobody listens on (bound, then released): connecting is refused at once."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port

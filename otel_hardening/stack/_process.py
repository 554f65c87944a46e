"""One background process of the local stack: started detached, logged to a file, waited on
until an HTTP readiness URL answers, and stopped by its own pid only."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil


class StackError(RuntimeError):
    """A component could not be found, started, or did not become ready."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return 200 <= int(response.status) < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


@dataclass
class ManagedProcess:
    """A process this stack started. ``started`` guards against a recycled pid."""

    name: str
    argv: list[str]
    log: Path
    ready_url: str
    pid: int = 0
    started: float = 0.0
    """Seconds from boot to the process's start: unlike its wall-clock create time, which psutil
    derives from the current boot time, this does not move when the system clock is stepped (a
    stepped clock made a 0.5 s create-time check disown our own children, so stop() did nothing)."""

    @classmethod
    def start(
        cls,
        name: str,
        argv: Sequence[str],
        log: Path,
        ready_url: str,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> ManagedProcess:
        log.parent.mkdir(parents=True, exist_ok=True)
        full_env = dict(os.environ)
        full_env.update(env or {})
        with log.open("ab") as out:
            out.write(f"--- {time.strftime('%H:%M:%S')} starting: {' '.join(argv)}\n".encode())
            out.flush()
            try:
                popen = subprocess.Popen(
                    list(argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    env=full_env, cwd=cwd, start_new_session=True,
                )
            except OSError as exc:
                raise StackError(f"{name}: cannot start {argv[0]}: {exc}") from exc
        proc = cls(name=name, argv=list(argv), log=log, ready_url=ready_url, pid=popen.pid)
        with contextlib.suppress(psutil.Error):
            proc.started = _since_boot(psutil.Process(popen.pid))
        # Keep a handle so the child is reaped when it exits while we still run.
        _CHILDREN[popen.pid] = popen
        return proc

    def _process(self) -> psutil.Process | None:
        try:
            process = psutil.Process(self.pid)
            if self.started and abs(_since_boot(process) - self.started) > 0.5:
                return None  # the pid now belongs to someone else
            if process.status() == psutil.STATUS_ZOMBIE:
                return None
            return process
        except psutil.Error:
            return None

    def running(self) -> bool:
        popen = _CHILDREN.get(self.pid)
        if popen is not None:  # our own child: no need to ask who owns the pid
            return popen.poll() is None
        return self._process() is not None

    def ready(self) -> bool:
        return self.running() and http_ok(self.ready_url)

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                raise StackError(
                    f"{self.name} exited before it was ready; last log lines ({self.log}):\n{tail(self.log)}"
                )
            if http_ok(self.ready_url):
                return
            time.sleep(0.2)
        raise StackError(
            f"{self.name} not ready at {self.ready_url} after {timeout:.0f}s; "
            f"last log lines ({self.log}):\n{tail(self.log)}"
        )

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``: only this pid, and only if it is still ours."""
        popen = _CHILDREN.pop(self.pid, None)
        if popen is not None:  # our unreaped child: its pid cannot have been reused
            if popen.poll() is None:
                popen.terminate()
                try:
                    popen.wait(timeout)
                except subprocess.TimeoutExpired:
                    popen.kill()
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        popen.wait(5)
            return
        process = self._process()
        if process is not None:
            with contextlib.suppress(psutil.Error):
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout)
                except psutil.TimeoutExpired:
                    process.kill()
                    process.wait(5)

    def kill(self) -> None:
        """SIGKILL at once (a crash, not a shutdown)."""
        popen = _CHILDREN.pop(self.pid, None)
        if popen is not None:
            if popen.poll() is None:
                popen.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    popen.wait(5)
            return
        process = self._process()
        if process is not None:
            with contextlib.suppress(psutil.Error):
                process.kill()
                process.wait(5)

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name, "argv": self.argv, "log": str(self.log), "ready_url": self.ready_url,
            "pid": self.pid, "started": self.started,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> ManagedProcess:
        argv = data["argv"]
        assert isinstance(argv, list)
        return cls(
            name=str(data["name"]), argv=[str(a) for a in argv], log=Path(str(data["log"])),
            ready_url=str(data["ready_url"]), pid=int(str(data["pid"])),
            started=float(str(data.get("started", 0.0))),
        )


_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def _since_boot(process: psutil.Process) -> float:
    return process.create_time() - psutil.boot_time()

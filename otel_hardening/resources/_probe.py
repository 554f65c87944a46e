"""Reading the process: a cheap probe for the metric reader, slower probes for the sampler thread.

Measured on the 2-core CI VM (bench/resources_cost.py, 41 MiB RSS, 156 fds): one cheap reading
(psutil ``oneshot`` for RSS, VMS, CPU times, threads; fd count; rlimit) costs ~0.3-0.4 ms of CPU and
all 20 callbacks of a collection ~0.6-0.8 ms. USS reads ``/proc/self/smaps_rollup``, which walks the
page tables: ~0.5 ms at 41 MiB RSS but ~10-13 ms at 1 GiB, so it runs on the sampler thread, never on
the reader's path. Counting sockets by ``fstat`` of every fd costs ~2.7 us per fd
(``Process.net_connections()`` costs 30-45 ms), so it runs there too, as does walking the asyncio task
set (~0.65 ms per 1000 tasks).
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import stat
import threading
import time
from collections import Counter
from dataclasses import dataclass, field, replace

import psutil

from otel_hardening._logging import log_once

_PSUTIL_ERRORS = (psutil.Error, OSError)
_FD_DIR = "/proc/self/fd"


def _degraded(what: str, exc: BaseException) -> None:
    log_once(f"resources:probe:{what}", logging.WARNING,
             "otel_hardening: cannot read %s (%r); reporting it as missing", what, exc)


@dataclass(frozen=True)
class ProcessReading:
    at: float
    rss: int | None = None
    vms: int | None = None
    cpu_user: float | None = None
    cpu_system: float | None = None
    cpu_utilization: dict[str, float] = field(default_factory=dict)
    """Per ``cpu.mode``: CPU seconds since the previous reading / wall seconds / CPUs available."""
    threads: int | None = None
    fds: int | None = None
    fd_soft_limit: int | None = None

    @property
    def fd_usage_ratio(self) -> float | None:
        if self.fds is None or not self.fd_soft_limit:
            return None
        return self.fds / self.fd_soft_limit


def _fd_soft_limit() -> int | None:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


def _cpus_available() -> int:
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class ProcessProbe:
    """One reading shared by every observable callback of a collection (they run back to back)."""

    max_age = 0.1

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = -1
        self._proc: psutil.Process | None = None
        self._last: ProcessReading | None = None
        self._cpus = _cpus_available()

    def _process(self) -> psutil.Process:
        pid = os.getpid()
        if self._proc is None or pid != self._pid:  # after a fork the old Process names the parent
            self._proc, self._pid, self._last = psutil.Process(pid), pid, None
        return self._proc

    def read(self) -> ProcessReading:
        with self._lock:
            now = time.monotonic()
            if self._last is not None and now - self._last.at < self.max_age and self._pid == os.getpid():
                return self._last
            previous = self._last
            reading = self._read(now, previous)
            self._last = reading
            return reading

    def _read(self, now: float, previous: ProcessReading | None) -> ProcessReading:
        values: dict[str, object] = {}
        try:
            proc = self._process()
            with proc.oneshot():
                try:
                    mem = proc.memory_info()
                    values.update(rss=mem.rss, vms=mem.vms)
                except _PSUTIL_ERRORS as exc:
                    _degraded("memory_info", exc)
                try:
                    cpu = proc.cpu_times()
                    values.update(cpu_user=cpu.user, cpu_system=cpu.system)
                except _PSUTIL_ERRORS as exc:
                    _degraded("cpu_times", exc)
                try:
                    values["threads"] = proc.num_threads()
                except _PSUTIL_ERRORS as exc:
                    _degraded("num_threads", exc)
                try:
                    values["fds"] = proc.num_fds()
                except (*_PSUTIL_ERRORS, AttributeError) as exc:
                    _degraded("num_fds", exc)
        except Exception as exc:  # psutil internals failing must not take the probe down
            _degraded("process", exc)
        try:
            values["fd_soft_limit"] = _fd_soft_limit()
        except (OSError, ValueError) as exc:
            _degraded("RLIMIT_NOFILE", exc)
        reading = ProcessReading(at=now, **values)  # type: ignore[arg-type]
        if previous is not None and now > previous.at:
            util: dict[str, float] = {}
            span = (now - previous.at) * self._cpus
            for mode, cur, old in (("user", reading.cpu_user, previous.cpu_user),
                                   ("system", reading.cpu_system, previous.cpu_system)):
                if cur is not None and old is not None:
                    util[mode] = max(0.0, (cur - old) / span)
            reading = replace(reading, cpu_utilization=util)
        return reading


def uss_bytes() -> int | None:
    try:
        return int(psutil.Process().memory_full_info().uss)
    except (*_PSUTIL_ERRORS, AttributeError) as exc:
        _degraded("USS", exc)
        return None


def socket_count() -> int | None:
    """Sockets among the open fds (fstat of each fd, no /proc/net parsing)."""
    try:
        names = os.listdir(_FD_DIR)
    except OSError as exc:
        _degraded("open sockets", exc)
        return None
    count = 0
    for name in names:
        try:
            if stat.S_ISSOCK(os.fstat(int(name)).st_mode):
                count += 1
        except (OSError, ValueError):
            continue  # closed between listdir and fstat, or listdir's own fd
    return count


def tasks_per_loop() -> dict[str, int] | None:
    """Unfinished tasks of each running event loop, keyed by the name of the loop's thread."""
    registry = getattr(asyncio.tasks, "_all_tasks", None)
    if registry is None:
        log_once("resources:probe:tasks", logging.WARNING,
                 "otel_hardening: this Python has no asyncio task registry; asyncio tasks not counted")
        return None
    tasks: list[asyncio.Task[object]] = []
    for _ in range(5):  # the WeakSet may change size under us while another thread creates tasks
        try:
            tasks = list(registry)
            break
        except RuntimeError:
            continue
    else:
        return None
    per_loop: Counter[asyncio.AbstractEventLoop] = Counter()
    for task in tasks:
        if not task.done():
            per_loop[task.get_loop()] += 1
    names = {t.ident: t.name for t in threading.enumerate()}
    counts: dict[str, int] = {}
    for loop, n in per_loop.items():
        if not loop.is_running():
            continue
        name = names.get(getattr(loop, "_thread_id", None), "unknown")
        counts[name] = counts.get(name, 0) + n
    return counts


_UNLIMITED = 1 << 60


def memory_limit(root: str = "/sys/fs/cgroup", proc_cgroup: str = "/proc/self/cgroup") -> int | None:
    """The tightest cgroup memory limit on this process and its ancestors (v2, else v1), or None."""
    try:
        with open(proc_cgroup) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    candidates: list[str] = []
    for line in lines:
        hier, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hier == "0" and controllers == "":
            candidates += [os.path.join(d, "memory.max") for d in _ancestors(root, path)]
        elif "memory" in controllers.split(","):
            candidates += [os.path.join(d, "memory.limit_in_bytes")
                           for d in _ancestors(os.path.join(root, "memory"), path)]
    limits = []
    for candidate in candidates:
        try:
            with open(candidate) as f:
                raw = f.read().strip()
        except OSError:
            continue
        if raw.isdigit() and 0 < int(raw) < _UNLIMITED:
            limits.append(int(raw))
    return min(limits) if limits else None


def _ancestors(base: str, path: str) -> list[str]:
    """``base/a/b``, ``base/a``, ``base``: in a cgroup namespace the path is ``/`` and only base exists."""
    parts = [p for p in path.split("/") if p]
    return [os.path.join(base, *parts[:i]) for i in range(len(parts), -1, -1)]

"""The tracemalloc hunt: two snapshots some seconds apart, diffed, top growing allocation sites.

tracemalloc costs 2-5x CPU on allocation and ~1.5x memory while on, and diffing a large heap takes
seconds, so a hunt is bounded in time (``seconds``) and in tracemalloc's own memory
(``max_memory``), only one runs at a time, and it never starts by itself at import.
"""

from __future__ import annotations

import importlib
import linecache
import os
import threading
import time
import tracemalloc
from collections.abc import Sequence
from dataclasses import dataclass, field

_running = threading.Lock()
_POLL = 0.25

_OWN_DIR = os.path.dirname(os.path.abspath(__file__))


@dataclass(frozen=True)
class AllocationSite:
    """One source line whose live allocations grew during the hunt."""

    file: str
    line: int
    size_diff: int
    """Bytes allocated at this line and still alive, second snapshot minus first."""
    count_diff: int
    """Live memory blocks, second snapshot minus first."""
    size: int
    """Bytes allocated at this line and alive at the second snapshot."""
    traceback: tuple[str, ...] = ()
    """Most recent call last, ``file:line  source`` per frame, from the largest-growing call path."""


@dataclass(frozen=True)
class LeakReport:
    sites: list[AllocationSite] = field(default_factory=list)
    """Growing sites, largest ``size_diff`` first."""
    seconds: float = 0.0
    """Time between the two snapshots (shorter than asked if the memory bound or a stop cut it)."""
    error: str | None = None
    """Why there are no sites: a hunt already running, tracemalloc unavailable, ... None if it ran."""
    truncated: bool = False
    """The second snapshot was taken early: tracemalloc reached its memory bound, or tracking stopped."""
    tracemalloc_was_tracing: bool = False
    """tracemalloc was already on (started by the application); the hunt left it on."""


def _filters() -> list[tracemalloc.Filter]:
    import_dir = os.path.dirname(importlib.__file__ or "")
    return [
        tracemalloc.Filter(False, tracemalloc.__file__),
        tracemalloc.Filter(False, linecache.__file__),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap_external>"),
        tracemalloc.Filter(False, os.path.join(import_dir, "*")),
        # any frame of ours: the hunt's and the sampler's own allocations are not the application's
        tracemalloc.Filter(False, os.path.join(_OWN_DIR, "*"), all_frames=True),
        tracemalloc.Filter(False, "<unknown>"),
    ]


def _format(frames: Sequence[tracemalloc.Frame]) -> tuple[str, ...]:
    lines = []
    for frame in frames:
        source = linecache.getline(frame.filename, frame.lineno).strip()
        lines.append(f"{frame.filename}:{frame.lineno}  {source}".rstrip())
    return tuple(lines)


def rank(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, top: int) -> list[AllocationSite]:
    """Diff by call path, then add up per allocating line (the most recent frame)."""
    filters = _filters()
    diffs = after.filter_traces(filters).compare_to(before.filter_traces(filters), "traceback")
    by_line: dict[tuple[str, int], list[tracemalloc.StatisticDiff]] = {}
    for diff in diffs:
        frame = diff.traceback[-1]  # tracebacks iterate oldest first
        by_line.setdefault((frame.filename, frame.lineno), []).append(diff)
    sites = []
    for (filename, lineno), group in by_line.items():
        size_diff = sum(d.size_diff for d in group)
        if size_diff <= 0:
            continue
        biggest = max(group, key=lambda d: d.size_diff)
        sites.append(AllocationSite(
            file=filename,
            line=lineno,
            size_diff=size_diff,
            count_diff=sum(d.count_diff for d in group),
            size=sum(d.size for d in group),
            traceback=_format(list(biggest.traceback)),
        ))
    sites.sort(key=lambda s: s.size_diff, reverse=True)
    return sites[:top]


def run(seconds: float, top: int, frames: int, max_memory: int,
        stop: threading.Event | None = None) -> LeakReport:
    """Blocking hunt; returns an error report instead of raising or waiting for another hunt."""
    if not _running.acquire(blocking=False):
        return LeakReport(error="a hunt is already running")
    try:
        stop = stop or threading.Event()
        was_tracing = tracemalloc.is_tracing()
        if not was_tracing:
            tracemalloc.start(max(1, frames))
        try:
            before = tracemalloc.take_snapshot()
            started = time.monotonic()
            deadline = started + max(0.0, seconds)
            truncated = False
            while (left := deadline - time.monotonic()) > 0:
                if stop.wait(min(_POLL, left)):
                    return LeakReport(seconds=time.monotonic() - started, truncated=True,
                                      error="stopped before the second snapshot",
                                      tracemalloc_was_tracing=was_tracing)
                if tracemalloc.get_tracemalloc_memory() > max_memory:
                    truncated = True
                    break
            after = tracemalloc.take_snapshot()
            elapsed = time.monotonic() - started
        finally:
            if not was_tracing:
                tracemalloc.stop()
        return LeakReport(sites=rank(before, after, top), seconds=elapsed, truncated=truncated,
                          tracemalloc_was_tracing=was_tracing)
    finally:
        _running.release()


def running() -> bool:
    return _running.locked()

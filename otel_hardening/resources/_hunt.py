"""The tracemalloc hunt: snapshots some seconds apart, diffed, top steadily growing allocation sites.

tracemalloc costs 2-5x CPU on allocation and ~1.5x memory while on, and diffing a large heap takes
seconds, so a hunt is bounded in time (``seconds``) and in tracemalloc's own memory
(``max_memory``), only one runs at a time, and it never starts by itself at import.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import importlib
import linecache
import os
import random
import threading
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

_running = threading.Lock()
"""Held while a hunt runs (``running()``); taken and released under ``_state_lock`` with ``_current``."""
_state_lock = threading.Lock()
_owns_tracemalloc = False
"""tracemalloc was started by the running hunt (so a forked child knows to stop it)."""
_POLL = 0.02
CHECKPOINTS = 8
"""Snapshots between the first and the last, kept only as bytes per line (a few KiB each)."""

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
    trigger: str = ""
    """``auto`` (a suspected memory leak started it) or ``api`` (``resources.hunt()``)."""
    finished_at: float | None = None
    """Wall-clock time (``time.time()``) the hunt finished."""

    def summary(self) -> str:
        """One line: when, why, how long, and the top growing site."""
        import datetime

        when = (datetime.datetime.fromtimestamp(self.finished_at, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
                if self.finished_at is not None else "unfinished")
        head = f"leak hunt ({self.trigger or 'unknown'}) {when}, {self.seconds:.1f}s"
        if self.error is not None:
            return f"{head}: {self.error}"
        if not self.sites:
            return f"{head}: no growing allocation site"
        top = self.sites[0]
        return (f"{head}: top of {len(self.sites)} growing sites {top.file}:{top.line} "
                f"+{top.size_diff} B in +{top.count_diff} blocks")


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


def _warm_filters() -> None:
    """Compile the filters' patterns before the first snapshot: fnmatch caches each compiled pattern
    for good, and compiled during the hunt they would rank as a growing site of their own."""
    for f in _filters():
        fnmatch.fnmatch("", f.filename_pattern)


def _format(frames: Sequence[tracemalloc.Frame]) -> tuple[str, ...]:
    lines = []
    for frame in frames:
        source = linecache.getline(frame.filename, frame.lineno).strip()
        lines.append(f"{frame.filename}:{frame.lineno}  {source}".rstrip())
    return tuple(lines)


Line = tuple[str, int]


def _line_sizes(snapshot: tracemalloc.Snapshot) -> dict[Line, int]:
    return {(st.traceback[-1].filename, st.traceback[-1].lineno): st.size
            for st in snapshot.statistics("lineno")}


def rank(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, checkpoints: Sequence[dict[Line, int]],
         top: int) -> list[AllocationSite]:
    """Growing allocating lines, steadiest growth first.

    A leaking line only grows; a line that allocates and frees in cycles (a batch buffer, a cache
    being rebuilt) can show a larger difference between two snapshots taken at the wrong moments.
    So every snapshot counts: a line scores the smallest size it had in the later half of the
    snapshots minus the largest in the earlier half. A leak scores its growth over about half the
    hunt; a cycle sampled at random phases scores below zero unless all of the later samples land
    above all of the earlier ones (1 in 252 with 10 snapshots).
    """
    before, after = before.filter_traces(_filters()), after.filter_traces(_filters())
    series = [_line_sizes(before), *checkpoints, _line_sizes(after)]
    half = len(series) // 2
    scores: dict[Line, float] = {}
    for line in series[-1]:
        sizes = [s.get(line, 0) for s in series]
        score = min(sizes[-half:]) - max(sizes[:half])
        if score > 0:
            scores[line] = score
    paths: dict[Line, list[tracemalloc.StatisticDiff]] = {}
    for diff in after.compare_to(before, "traceback"):
        frame = diff.traceback[-1]  # tracebacks iterate oldest first
        if (frame.filename, frame.lineno) in scores:
            paths.setdefault((frame.filename, frame.lineno), []).append(diff)
    sites = []
    for line in sorted(scores, key=lambda k: scores[k], reverse=True)[:top]:
        group = paths.get(line, [])
        biggest = max(group, key=lambda d: d.size_diff, default=None)
        sites.append(AllocationSite(
            file=line[0],
            line=line[1],
            size_diff=series[-1][line] - series[0].get(line, 0),
            count_diff=sum(d.count_diff for d in group),
            size=series[-1][line],
            traceback=_format(list(biggest.traceback)) if biggest is not None else (),
        ))
    return sites


class _Current:
    """The running hunt: others wait for its report instead of starting a second one."""

    def __init__(self, seconds: float) -> None:
        self.ends = time.monotonic() + seconds
        self.done = threading.Event()
        self.report: LeakReport | None = None


_current: _Current | None = None
_last: LeakReport | None = None
WAIT_SLACK = 60.0
"""Seconds beyond the running hunt's planned end to wait for its diff (a large heap diffs slowly)."""


def last_report() -> LeakReport | None:
    """The latest finished hunt's report (automatic or on demand), or None before the first."""
    return _last


def _wait_for(current: _Current) -> LeakReport:
    if not current.done.wait(max(0.0, current.ends - time.monotonic()) + WAIT_SLACK) or current.report is None:
        return LeakReport(error="a hunt is already running and did not finish in time")
    return current.report


def run(seconds: float, top: int, frames: int, max_memory: int,
        stop: threading.Event | None = None, trigger: str = "api",
        on_report: Callable[[LeakReport], None] | None = None) -> LeakReport:
    """Blocking hunt. While another hunt runs, waits for it and returns its report. ``on_report`` is
    called with a successful report by the caller that ran the hunt only (so it is emitted once), before
    the waiters are woken."""
    global _current, _last
    with _state_lock:
        running = _current
        if running is None:
            _running.acquire()
            current = _current = _Current(seconds)
    if running is not None:
        return _wait_for(running)
    report = LeakReport(error="the hunt failed", trigger=trigger)
    try:
        report = dataclasses.replace(_hunt(seconds, top, frames, max_memory, stop), trigger=trigger,
                                     finished_at=time.time())
        if report.error is None:
            _last = report
            if on_report is not None:
                # before the waiters wake: a caller handed this report finds its record already out
                on_report(report)
    finally:
        current.report = report
        with _state_lock:
            _current = None
            _running.release()
        current.done.set()
    return report


def _hunt(seconds: float, top: int, frames: int, max_memory: int, stop: threading.Event | None) -> LeakReport:
    global _owns_tracemalloc
    stop = stop or threading.Event()
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start(max(1, frames))
        _owns_tracemalloc = True
    try:
        _warm_filters()
        before = tracemalloc.take_snapshot()
        started = time.monotonic()
        # random times, one per slot: a cycle whose period divides a fixed spacing would alias
        # into what looks like steady growth
        slots = [started + seconds * (k + 0.2 + 0.6 * random.random()) / (CHECKPOINTS + 1)
                 for k in range(1, CHECKPOINTS + 1)]
        checkpoints: list[dict[Line, int]] = []
        truncated = False
        while (left := started + seconds - time.monotonic()) > 0:
            if stop.wait(min(_POLL, left)):
                return LeakReport(seconds=time.monotonic() - started, truncated=True,
                                  error="stopped before the last snapshot",
                                  tracemalloc_was_tracing=was_tracing)
            if tracemalloc.get_tracemalloc_memory() > max_memory:
                truncated = True
                break
            if len(checkpoints) < CHECKPOINTS and time.monotonic() >= slots[len(checkpoints)]:
                checkpoints.append(_line_sizes(tracemalloc.take_snapshot().filter_traces(_filters())))
        after = tracemalloc.take_snapshot()
        elapsed = time.monotonic() - started
    finally:
        if not was_tracing:
            tracemalloc.stop()
            _owns_tracemalloc = False
    return LeakReport(sites=rank(before, after, checkpoints, top), seconds=elapsed, truncated=truncated,
                      tracemalloc_was_tracing=was_tracing)


def running() -> bool:
    return _running.locked()


def after_fork_in_child() -> None:
    """A hunt running in the parent at fork time does not exist in the child: release what it held."""
    global _running, _state_lock, _owns_tracemalloc, _current
    _running, _state_lock = threading.Lock(), threading.Lock()
    _current = None
    if _owns_tracemalloc:
        tracemalloc.stop()
        _owns_tracemalloc = False

"""The background sampler: a bounded series per resource, a leak verdict per resource, auto hunts."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from otel_hardening._logging import log_once
from otel_hardening.resources import _hunt, _probe
from otel_hardening.resources._trend import BLOCKS, MIN_POINTS_PER_BLOCK, LeakTracker, TrendParams
from otel_hardening.resources.config import ResourceConfig

RESOURCES = ("memory", "fds", "threads", "tasks")
MAX_POINTS = 10_000
MIN_POINTS = BLOCKS * MIN_POINTS_PER_BLOCK
PAGE = 4096


_verdict_listeners: list[Callable[[], None]] = []


def add_verdict_listener(listener: Callable[[], None]) -> Callable[[], None]:
    """Call ``listener()`` on the sampler thread whenever a leak verdict flips (health re-evaluates
    at once). It must be quick. Returns a function that removes it."""
    _verdict_listeners.append(listener)

    def remove() -> None:
        if listener in _verdict_listeners:
            _verdict_listeners.remove(listener)

    return remove


def _verdict_changed() -> None:
    for listener in tuple(_verdict_listeners):
        try:
            listener()
        except Exception:
            log_once("resources:verdict-listener", logging.WARNING,
                     "otel_hardening: a leak verdict listener failed", exc_info=True)


@dataclass(frozen=True)
class SlowReading:
    """What the sampler measured at its last tick (the slow probes live here, off the reader's path)."""

    at: float = 0.0
    uss: int | None = None
    sockets: int | None = None
    tasks: dict[str, int] | None = None
    process: _probe.ProcessReading | None = None


@dataclass
class _Series:
    tracker: LeakTracker
    points: deque[tuple[float, float]] = field(default_factory=deque)


class Sampler:
    def __init__(self, config: ResourceConfig,
                 on_report: Callable[[_hunt.LeakReport], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._probe = _probe.ProcessProbe()  # its own: CPU utilization deltas belong to the reader's
        self.on_report = on_report
        self._clock = clock
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._hunt_thread: threading.Thread | None = None
        self._last_hunt: float | None = None
        self._started_at = clock()
        self.latest = SlowReading()
        self.memory_limit = _probe.memory_limit()
        per_window = config.leak_window / config.interval
        if not MIN_POINTS <= per_window <= MAX_POINTS:
            log_once("resources:window", logging.WARNING,
                     "otel_hardening: OTEL_PYTHON_HARDENING_LEAK_WINDOW / RESOURCE_INTERVAL = %.0f samples; "
                     "leak detection needs %d to %d and stays off", per_window, MIN_POINTS, MAX_POINTS)
        maxlen = min(MAX_POINTS, math.ceil(per_window) + 4)
        count = TrendParams(config.leak_window, config.leak_min_count_growth / config.leak_window, 1.0)
        params = {
            "memory": TrendParams(config.leak_window, config.leak_min_memory_rate, PAGE),
            "fds": count,
            "threads": count,
            "tasks": count,
        }
        self._series = {name: _Series(LeakTracker(params[name]), deque(maxlen=maxlen)) for name in RESOURCES}

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        self._started_at = self._clock()
        self._thread = threading.Thread(target=self._run, name="otel-hardening-resources", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        for thread in (self._thread, self._hunt_thread):
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout)
                if thread.is_alive():
                    log_once("resources:join", logging.WARNING,
                             "otel_hardening: %s did not stop within %.0f s", thread.name, timeout)

    @property
    def alive(self) -> bool:
        return self._thread is None or self._thread.is_alive() or self._stop.is_set()

    def _run(self) -> None:
        while True:
            try:
                self.tick()
            except Exception:
                log_once("resources:tick", logging.ERROR,
                         "otel_hardening: resource sampler tick failed; it keeps going", exc_info=True)
            if self._stop.wait(self.config.interval):
                return

    # -- one tick -----------------------------------------------------------------------------

    def tick(self) -> None:
        now = self._clock()
        process = self._probe.read()
        tasks = _probe.tasks_per_loop()
        latest = SlowReading(
            at=now,
            uss=_probe.uss_bytes() if self.config.uss else None,
            sockets=_probe.socket_count(),
            tasks=tasks,
            process=process,
        )
        values = {
            "memory": process.rss,
            "fds": process.fds,
            "threads": process.threads,
            "tasks": sum(tasks.values()) if tasks is not None else None,
        }
        start_hunt = changed = False
        with self._lock:
            self.latest = latest
            if now - self._started_at < self.config.leak_warmup:
                return
            for name, value in values.items():
                if value is None:
                    continue
                series = self._series[name]
                series.points.append((now, float(value)))
                times = [p[0] for p in series.points]
                was = series.tracker.suspected
                series.tracker.update(times, [p[1] for p in series.points])
                changed = changed or series.tracker.suspected != was
                if name == "memory" and series.tracker.suspected:
                    start_hunt = self._hunt_due(now)
        if changed:
            _verdict_changed()
        if start_hunt:
            self._start_hunt(now)

    # -- automatic hunt -----------------------------------------------------------------------

    def _hunt_due(self, now: float) -> bool:
        if not self.config.hunt_auto or _hunt.running():
            return False
        return self._last_hunt is None or now - self._last_hunt >= self.config.hunt_cooldown

    def _start_hunt(self, now: float) -> None:
        self._last_hunt = now
        self._hunt_thread = threading.Thread(target=self._hunt, name="otel-hardening-leak-hunt", daemon=True)
        self._hunt_thread.start()

    def _hunt(self) -> None:
        try:
            c = self.config
            _hunt.run(c.hunt_duration, c.hunt_top, c.hunt_frames, c.hunt_max_memory, self._stop, trigger="auto",
                      on_report=self.on_report)
        except Exception:
            log_once("resources:hunt", logging.ERROR, "otel_hardening: leak hunt failed", exc_info=True)

    # -- reading state ------------------------------------------------------------------------

    def verdicts(self) -> dict[str, tuple[bool, float]]:
        """Per resource: (leak suspected, Theil-Sen growth rate per second)."""
        with self._lock:
            return {name: (s.tracker.suspected, s.tracker.slope) for name, s in self._series.items()}

    def series(self, name: str) -> list[tuple[float, float]]:
        with self._lock:
            return list(self._series[name].points)

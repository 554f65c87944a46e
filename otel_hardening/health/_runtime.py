"""The monitor: evaluates every source on a daemon thread, damps the result and publishes it."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from otel_hardening._logging import log_once
from otel_hardening.health._model import ComponentStatus, Damper, HealthReport, Status
from otel_hardening.health._sources import Clock, ExportHealth, Resources, UpstreamLike, Upstreams
from otel_hardening.health.config import HealthConfig


class Monitor:
    """Owns the sources, the hysteresis state and the latest report.

    ``evaluate()`` is safe to call from any thread; ``start()`` runs it every ``config.interval``
    seconds on a daemon thread (plus the probe threads) and ``stop()`` joins them.
    """

    def __init__(
        self,
        config: HealthConfig,
        *,
        clock: Clock = time.monotonic,
        wall: Clock = time.time,
        upstreams: Callable[[], Sequence[UpstreamLike]] | None = None,
        resources: Callable[[], Any] | None = None,
        logger_provider: object | None = None,
        on_change: Callable[[Status | None, HealthReport], None] | None = None,
    ) -> None:
        from otel_hardening.health._metrics import emit_change
        from otel_hardening.health._probes import Prober

        self.config = config
        self._clock = clock
        self._wall = wall
        self.upstreams = Upstreams(config, upstreams)
        self.resources = Resources(config, resources)
        self.export = ExportHealth(config, clock)
        self.prober = Prober(config)
        self._damper = Damper(config.recovery_hold)
        self._eval_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.latest: HealthReport | None = None
        self.last_tick: float | None = None
        self._on_change = on_change or (lambda prev, rep: emit_change(logger_provider, prev, rep))

    def _collect(self, now: float) -> list[ComponentStatus]:
        out: list[ComponentStatus] = []
        sources: list[tuple[str, Callable[[float], list[ComponentStatus]]]] = [
            ("upstreams", self.upstreams.components),
            ("resources", self.resources.components),
            ("telemetry", self.export.components),
            ("probes", self.prober.components),
        ]
        for name, source in sources:
            try:
                out.extend(source(now))
            except Exception:
                log_once(f"health:source:{name}", logging.WARNING,
                         "otel_hardening: health source %r failed; it is reported degraded", name,
                         exc_info=True)
                out.append(ComponentStatus("health", name, Status.DEGRADED,
                                           f"the {name} health source failed (see the otel_hardening log)"))
        return out

    def evaluate(self) -> HealthReport:
        with self._eval_lock:
            now = self._clock()
            wall = self._wall()
            previous = self._damper.overall
            components, status = self._damper.apply(self._collect(now), now)
            since = wall - (now - self._damper.changed_at)
            report = HealthReport(status=status, components=components, since=since, time=wall)
            self.latest = report
            self.last_tick = now
        if status is not previous:
            try:
                self._on_change(previous, report)
            except Exception:
                log_once("health:on-change", logging.WARNING, "otel_hardening: health change hook failed",
                         exc_info=True)
        return report

    def _loop(self) -> None:
        while not self._stop.wait(self.config.interval):
            try:
                self.evaluate()
            except Exception:  # keep sampling; livez notices if ticks stop
                log_once("health:evaluate", logging.ERROR, "otel_hardening: health evaluation failed",
                         exc_info=True)

    def start(self) -> None:
        self.export.attach()
        self.prober.start()
        self.evaluate()
        self._thread = threading.Thread(target=self._loop, name="otel-hardening-health", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.config.interval + 5)
            self._thread = None
        self.prober.stop()
        self.export.detach()

    def alive(self) -> tuple[bool, str]:
        """Whether the process itself is working: the sampler threads run and results are fresh."""
        if self._thread is not None and not self._thread.is_alive():
            return False, "the health sampler thread is dead"
        if self._thread is not None and self.last_tick is not None:
            age = self._clock() - self.last_tick
            if age > 3 * self.config.interval + 10:
                return False, f"the health sampler has not completed an evaluation for {age:.0f}s"
        if self.resources.sampler_alive is False:
            return False, "the resource sampler thread is dead"
        return True, "sampler threads alive"

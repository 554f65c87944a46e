"""The monitor: evaluates every source on a daemon thread, damps the result and publishes it."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from otel_hardening._logging import log_once
from otel_hardening.health import _extra
from otel_hardening.health._cause import CircuitCauses
from otel_hardening.health._export import ExportHealth
from otel_hardening.health._metrics import emit_change
from otel_hardening.health._model import ComponentStatus, Damper, HealthReport, Status, readiness
from otel_hardening.health._sources import Clock, Hardening, Resources, UpstreamLike, Upstreams
from otel_hardening.health.config import HealthConfig

WAKE_SPACING = 0.02
"""Seconds between evaluations that wake-ups cause: the first is immediate, a storm of transitions
(thousands of upstreams failing together) is coalesced instead of evaluated once each."""


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
        from otel_hardening.health._probes import Prober

        self.config = config
        self._clock = clock
        self._wall = wall
        self.upstreams = Upstreams(config, upstreams)
        self.resources = Resources(config, resources)
        self.export = ExportHealth(config, clock, wall)
        self.hardening = Hardening(config)
        self.prober = Prober(config)
        self._damper = Damper(config.recovery_hold)
        self._eval_lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._unsubscribe: list[Callable[[], None]] = []
        self._thread: threading.Thread | None = None
        self.latest: HealthReport | None = None
        self.last_tick: float | None = None
        self._emits_records = on_change is None
        self._logger_provider = logger_provider
        self.causes = CircuitCauses()
        self._on_change = on_change

    def _collect(self, now: float) -> list[ComponentStatus]:
        out: list[ComponentStatus] = []
        sources: list[tuple[str, Callable[[float], list[ComponentStatus]]]] = [
            ("upstreams", self.upstreams.components),
            ("resources", self.resources.components),
            ("telemetry", self.export.components),
            ("hardening", self.hardening.components),
            ("probes", self.prober.components),
        ]
        sources += _extra.SOURCES.items()  # optional parts in use (the outbox)
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
            previous = self.latest
            components, status = self._damper.apply(self._collect(now), now)
            ready, not_ready = readiness(components)
            since = wall - (now - self._damper.changed_at)
            report = HealthReport(status=status, components=components, since=since, time=wall,
                                  ready=ready, not_ready=not_ready)
            self.latest = report
            self.last_tick = now
        if previous is None or status is not previous.status or ready is not previous.ready:
            try:
                was = previous.status if previous is not None else None
                if self._on_change is None:
                    emit_change(self._logger_provider, was, report, cause=self.causes.of(previous, report))
                else:
                    self._on_change(was, report)
                if self._emits_records:
                    self.export.own_record(self._clock())
            except Exception:
                log_once("health:on-change", logging.WARNING, "otel_hardening: health change hook failed",
                         exc_info=True)
        return report

    def _recheck_logs(self, report: HealthReport) -> None:
        """While the logs export fails, re-send the current state once per window: its fate tells
        whether logs flow again (health's records may be the only ones this process sends)."""
        now = self._clock()
        if self._emits_records and self.export.wants_recheck(now):
            emit_change(self._logger_provider, report.status, report, recheck=True)
            self.export.own_record(now)

    def wake(self, *_: object) -> None:
        """Re-evaluate now (a circuit transition or a leak verdict changed): worse applies at once.

        Safe from any thread and cheap: it only sets an event; the sampler thread does the work."""
        self._wake.set()

    def _loop(self) -> None:
        due = self._clock() + self.config.interval
        while not self._stop.is_set():
            woke = self._wake.wait(max(0.0, due - self._clock()))
            if self._stop.is_set():
                return
            if woke:
                self._wake.clear()
            else:
                due = self._clock() + self.config.interval
            try:
                self._recheck_logs(self.evaluate())
            except Exception:  # keep sampling; livez notices if ticks stop
                log_once("health:evaluate", logging.ERROR, "otel_hardening: health evaluation failed",
                         exc_info=True)
            if woke:
                self._stop.wait(WAKE_SPACING)  # a storm of transitions costs at most one evaluation per spacing

    def _subscribe(self) -> None:
        try:
            from otel_hardening.http import transitions

            self._unsubscribe.append(transitions.add_transition_listener(self.causes.record))
            self._unsubscribe.append(transitions.add_transition_listener(self.wake))
        except (ImportError, AttributeError):
            pass
        try:
            from otel_hardening.resources import _sampler

            self._unsubscribe.append(_sampler.add_verdict_listener(self.wake))
        except (ImportError, AttributeError):
            pass

    def start(self) -> None:
        self.export.attach()
        self.prober.start()
        self.evaluate()
        self._subscribe()
        self._thread = threading.Thread(target=self._loop, name="otel-hardening-health", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        self.prober.stop()
        self.export.detach()

    def alive(self) -> tuple[bool, str]:
        """Liveness: the health sampler itself runs and completes evaluations (a process whose
        evaluation is stuck is wedged). Dependencies and resources never fail it."""
        if self._thread is not None and not self._thread.is_alive():
            return False, "the health sampler thread is dead"
        if self._thread is not None and self.last_tick is not None:
            age = self._clock() - self.last_tick
            if age > 3 * self.config.interval + 10:
                return False, f"the health sampler has not completed an evaluation for {age:.0f}s"
        return True, "the health sampler is evaluating"

    def ready(self) -> tuple[bool, tuple[str, ...]]:
        """Readiness: the latest report's, and not ready while the health sampler is not alive."""
        ok, why = self.alive()
        if not ok:
            return False, (f"health:sampler: {why}",)
        report = self.latest or self.evaluate()
        return report.ready, report.not_ready

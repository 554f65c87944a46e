"""Process health from what the hardening layer observes: circuits, retry and error ratios, leaks,
fd and memory use, telemetry export, and optional active dependency probes.

``report()`` returns the current :class:`HealthReport`. ``start()`` (called by ``install()``) evaluates
it every few seconds on a daemon thread, publishes the ``hardening.health.*`` gauges, emits a log
record on every change and, if configured, serves ``/healthz``, ``/readyz`` and ``/livez``.
Configuration: :class:`otel_hardening.health.config.HealthConfig` (``OTEL_PYTHON_HARDENING_HEALTH_*``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import TYPE_CHECKING

from otel_hardening._logging import log_once, logger
from otel_hardening.health._model import ComponentStatus, HealthReport, Status
from otel_hardening.health.config import HealthConfig

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider

    from otel_hardening.health._endpoint import HealthServer
    from otel_hardening.health._runtime import Monitor

__all__ = ["ComponentStatus", "HealthConfig", "HealthReport", "Status", "report", "running_config", "start",
           "stop"]

_lock = threading.Lock()
_monitor: Monitor | None = None
_server: HealthServer | None = None
_passive: Monitor | None = None
_metered: list[object] = []
"""Meter providers the gauges are registered with: instruments cannot be removed, so never twice."""


def _latest() -> HealthReport | None:
    monitor = _monitor
    return monitor.latest if monitor is not None else None


def report() -> HealthReport:
    """The current health. Before ``start()`` it is evaluated on demand with the configuration from the
    environment (no probes, no export watch, no log records)."""
    global _passive
    monitor = _monitor
    if monitor is not None and monitor.latest is not None:
        return monitor.latest
    with _lock:
        if _passive is None:
            from otel_hardening.health._runtime import Monitor

            _passive = Monitor(HealthConfig.from_env(os.environ), on_change=lambda prev, rep: None)
        passive = _passive
    try:
        return passive.evaluate()
    except Exception:
        log_once("health:report", logging.ERROR, "otel_hardening: health evaluation failed", exc_info=True)
        now = time.time()
        failed = ComponentStatus("health", "evaluation", Status.DEGRADED,
                                 "health evaluation failed (see the otel_hardening log)")
        return HealthReport(Status.DEGRADED, (failed,), since=now, time=now)


def running_config() -> HealthConfig | None:
    """The configuration the running monitor uses (its recovery hold, say); None when not started."""
    monitor = _monitor
    return monitor.config if monitor is not None else None


def start(config: HealthConfig, meter_provider: MeterProvider | None = None,
          logger_provider: object | None = None) -> None:
    """Start evaluating, the gauges and (if configured) the endpoint. A second call is a no-op."""
    global _monitor, _server
    if not config.enabled:
        return
    with _lock:
        if _monitor is not None:
            return
        try:
            from otel_hardening.health._metrics import HealthMetrics
            from otel_hardening.health._runtime import Monitor

            monitor = Monitor(config, logger_provider=logger_provider)
            try:
                monitor.start()
            except Exception:
                monitor.stop()  # detach the log handler and join whatever did start
                raise
            if not any(p is meter_provider for p in _metered):
                HealthMetrics(_latest, meter_provider)
                _metered.append(meter_provider)
            _monitor = monitor
        except Exception:
            log_once("health:start", logging.ERROR,
                     "otel_hardening: health status could not start; it is off", exc_info=True)
            return
        if config.endpoint is not None:
            try:
                from otel_hardening.health._endpoint import HealthServer

                def current() -> HealthReport:
                    return monitor.latest or monitor.evaluate()

                server = HealthServer(config, current, monitor.alive, monitor.ready)
                server.start()
                _server = server
                logger.info("otel_hardening: health endpoint on http://%s:%s/healthz (also /readyz, /livez)",
                            *server.server_address[:2])
            except OSError as exc:  # port in use, no permission, bad address: one line, no traceback
                log_once("health:endpoint", logging.ERROR,
                         "otel_hardening: health endpoint could not listen on %s:%s (%s); it is off, "
                         "everything else keeps running", config.endpoint[0], config.endpoint[1],
                         exc.strerror or exc)
            except Exception:
                log_once("health:endpoint", logging.ERROR,
                         "otel_hardening: health endpoint could not listen on %s:%s; it is off",
                         config.endpoint[0], config.endpoint[1], exc_info=True)


def stop() -> None:
    """Stop the endpoint and the sampler threads and join them. Idempotent."""
    global _monitor, _server, _passive
    with _lock:
        server, monitor = _server, _monitor
        _server = _monitor = _passive = None
    if server is not None:
        server.stop()
    if monitor is not None:
        monitor.stop()

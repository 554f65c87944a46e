"""Process resource metrics, leak detection and the tracemalloc hunt.

``start()`` registers observable instruments (collected on the metric reader's schedule) and starts
one sampler thread that keeps a bounded series of RSS, fds, threads and asyncio tasks and judges each
for a leak; ``stop()`` joins it. ``hunt(seconds)`` diffs two tracemalloc snapshots and names the
allocation sites that grew. See docs/telemetry.md for every metric and README for configuration.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import metrics

from otel_hardening import _env
from otel_hardening._env import MAX_INTERVAL
from otel_hardening._logging import log_once
from otel_hardening.resources import _hunt, _metrics, _probe, _report
from otel_hardening.resources._hunt import AllocationSite, LeakReport
from otel_hardening.resources._sampler import Sampler
from otel_hardening.resources.config import ResourceConfig

__all__ = [
    "AllocationSite",
    "LeakReport",
    "ResourceConfig",
    "ResourceSnapshot",
    "hunt",
    "last_report",
    "snapshot",
    "start",
    "stop",
]


@dataclass(frozen=True)
class ResourceSnapshot:
    """What the sampler knows now; read by the health model."""

    leaks: Mapping[str, bool] = field(default_factory=lambda: MappingProxyType({}))
    """memory | fds | threads | tasks -> leak suspected."""
    growth_rates: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    """Same keys -> Theil-Sen growth per second (bytes/s for memory)."""
    fd_usage_ratio: float | None = None
    memory_usage: int | None = None
    """RSS in bytes."""
    memory_limit: int | None = None
    """cgroup v2/v1 memory limit in bytes, None when there is none."""
    sampler_alive: bool = True
    """False only if the sampler was started and its thread died."""
    last_hunt: LeakReport | None = None
    """The latest successful leak hunt's report (``last_report()``)."""


@dataclass
class _State:
    config: ResourceConfig
    sampler: Sampler
    binding: _metrics.Binding
    logger_provider: Any


_lock = threading.Lock()
_state: _State | None = None


def start(config: ResourceConfig, meter_provider: metrics.MeterProvider | None = None,
          logger_provider: Any = None) -> None:
    """Register the instruments and start the sampler; a second call while started does nothing."""
    global _state
    with _lock:
        if _state is not None or not config.enabled:
            return
        try:
            probe = _probe.ProcessProbe()
            probe.read()  # the first collection then has a CPU utilization delta

            def on_report(report: LeakReport) -> None:
                _report.emit(report, "auto", None, logger_provider)

            sampler = Sampler(config, on_report)
            binding = _metrics.bind(meter_provider, probe, sampler)
            sampler.start()
            _state = _State(config, sampler, binding, logger_provider)
        except Exception:
            log_once("resources:start", logging.ERROR,
                     "otel_hardening: resource tracking could not start; it stays off", exc_info=True)


def stop() -> None:
    """Deactivate the instruments and join the sampler (and a running hunt); idempotent."""
    global _state
    with _lock:
        state, _state = _state, None
    if state is None:
        return
    try:
        state.binding.active = False
        state.sampler.stop()
    except Exception:
        log_once("resources:stop", logging.ERROR, "otel_hardening: resource tracking stop failed",
                 exc_info=True)


def hunt(seconds: float, top: int = 10) -> LeakReport:
    """Blocking: trace allocations for ``seconds`` (at most an hour) and return the ``top`` growing sites.

    Also emits the report as an OTel log record correlated with the caller's trace context (and a
    span event on the current span if it is recording). While another hunt runs (an automatic one,
    say), waits for it and returns its report instead of starting a second one. Never raises:
    problems come back in ``LeakReport.error``.
    """
    ctx = otel_context.get_current()
    state = _state
    config = state.config if state is not None else ResourceConfig()
    try:
        _env.check_seconds("seconds", seconds, MAX_INTERVAL)
    except ValueError as exc:
        return LeakReport(error=str(exc), trigger="api")
    provider = state.logger_provider if state is not None else None

    def emit(report: LeakReport) -> None:
        try:
            _report.emit(report, "api", ctx, provider)
        except Exception:
            log_once("resources:report", logging.ERROR, "otel_hardening: could not emit the leak report",
                     exc_info=True)

    try:
        return _hunt.run(seconds, top, config.hunt_frames, config.hunt_max_memory, on_report=emit)
    except Exception as exc:
        log_once("resources:hunt-api", logging.ERROR, "otel_hardening: leak hunt failed", exc_info=True)
        return LeakReport(error=repr(exc), trigger="api")


def last_report() -> LeakReport | None:
    """The latest successful leak hunt's report, automatic or on demand (``LeakReport.trigger``,
    ``finished_at``, ``summary()``), or None before the first one finishes."""
    return _hunt.last_report()


def _after_fork_in_child() -> None:
    """Threads do not survive fork: a worker forked after ``install()`` (gunicorn ``--preload``,
    multiprocessing) gets its own sampler instead of one that looks dead."""
    global _lock
    _lock = threading.Lock()  # another thread may have held it at fork time
    _hunt.after_fork_in_child()
    state = _state
    if state is None:
        return
    try:
        sampler = Sampler(state.config, state.sampler.on_report)
        state.binding.probe, state.binding.sampler = _probe.ProcessProbe(), sampler
        state.sampler = sampler
        sampler.start()
    except Exception:
        log_once("resources:fork", logging.ERROR,
                 "otel_hardening: resource tracking could not restart after fork", exc_info=True)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def snapshot() -> ResourceSnapshot | None:
    """The latest verdicts and readings, or None when resource tracking is not started."""
    state = _state
    if state is None:
        return None
    sampler = state.sampler
    verdicts = sampler.verdicts()
    process = sampler.latest.process
    return ResourceSnapshot(
        leaks=MappingProxyType({k: v[0] for k, v in verdicts.items()}),
        growth_rates=MappingProxyType({k: v[1] for k, v in verdicts.items()}),
        fd_usage_ratio=process.fd_usage_ratio if process is not None else None,
        memory_usage=process.rss if process is not None else None,
        memory_limit=sampler.memory_limit,
        sampler_alive=sampler.alive,
        last_hunt=_hunt.last_report(),
    )

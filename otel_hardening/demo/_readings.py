"""What the library measured, read through its public surfaces: the metrics it emits (an in-memory
reader on the same MeterProvider the OTLP exporter uses), ``health.report()``, ``resources.snapshot()``
and the ``hardening.leak.report`` log record. The view shows only this, never the script's intent."""

from __future__ import annotations

import linecache
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from otel_hardening import health, resources
from otel_hardening.demo._otel import Telemetry

OUTCOME_COLUMNS = ("success", "success_after_retry", "failure", "failure_after_retry",
                   "rejected_circuit_open", "rejected_retry_budget", "pool_timeout")
RECOVERING = "(recovering:"
"""The health damper's mark on a component it holds at a worse state until the recovery hold passed."""


@dataclass(frozen=True)
class PoolReading:
    """The upstream's connection pools now (``http.client.open_connections``, ``...pool.waiting``,
    ``...pool.limit``) and the waits for a connection so far (``http.client.request.time_in_queue``)."""

    active: float = 0.0
    idle: float = 0.0
    max_connections: float | None = None
    """None: no pool holds a connection for the upstream now, or its pools are unlimited."""
    waiting: float = 0.0
    queued: float = 0.0
    """Attempts that found the pool full and waited (the histogram's count), cumulative."""
    queue_seconds: float = 0.0
    """Their waits added up (the histogram's sum), cumulative."""

    def __str__(self) -> str:
        limit = "" if self.max_connections is None else f"/{self.max_connections:.0f}"
        idle = f" + {self.idle:.0f} idle" if self.idle else ""
        waiting = f", {self.waiting:.0f} waiting" if self.waiting else ""
        return f"pool {self.active:.0f}{limit} active{idle}{waiting}"


@dataclass(frozen=True)
class UpstreamReading:
    name: str
    circuit: str
    outcomes: dict[str, float]
    attempts: float
    budget_available: float | None
    pool: PoolReading = field(default_factory=PoolReading)
    quality: str | None = None
    """``hardening.http.client.network.quality``: None before the upstream's first judged attempt."""
    slow: float = 0.0
    """``hardening.http.client.slow_requests``, cumulative."""

    @property
    def calls(self) -> float:
        return float(sum(self.outcomes.values()))


@dataclass(frozen=True)
class HuntSite:
    file: str
    line: int
    source: str
    size_diff: int
    reported_ns: int = 0
    """The report's log record timestamp: tells a new hunt from an earlier one at the same site."""

    def __str__(self) -> str:
        short = "/".join(self.file.split("/")[-3:])
        return f"{short}:{self.line}  {self.source}  (+{self.size_diff / 2**20:.1f} MiB)"


@dataclass(frozen=True)
class OutboxReading:
    """The outbox's counters (cumulative) and how many writes wait in it now."""

    deferred: float = 0.0
    replayed: float = 0.0
    """Replays the upstream accepted (``hardening.outbox.replayed{outcome=delivered}``)."""
    dead_lettered: float = 0.0
    waiting: float = 0.0

    def __str__(self) -> str:
        return (f"{self.waiting:.0f} waiting; {self.deferred:.0f} deferred, {self.replayed:.0f} replayed, "
                f"{self.dead_lettered:.0f} dead-lettered")


@dataclass(frozen=True)
class Reading:
    upstreams: dict[str, UpstreamReading]
    health: str
    health_reasons: tuple[str, ...]
    rss: int | None
    rss_growth_rate: float
    """Theil-Sen slope of RSS over the detector's window, bytes/s (0 until its warm-up passed)."""
    leak_suspected: bool
    hunt: HuntSite | None
    export_errors: int
    last_export_error: str | None
    events: tuple[str, ...]
    """The last records of the ``otel_hardening`` logger, upstream URLs replaced by their names."""
    events_total: int
    app_errors: dict[str, int] = field(default_factory=dict)
    health_time: float = 0.0
    """Wall-clock time of the health report."""
    recovering: tuple[str, ...] = ()
    """Components health holds at a worse state until they stayed better for the recovery hold."""
    recovery_hold: float | None = None
    """The running health monitor's recovery hold, seconds."""
    outbox: OutboxReading = field(default_factory=OutboxReading)
    foreign_errors: int = 0
    """Exceptions that reached the application and are neither httpx's nor the outbox's deferral."""

    def total(self, outcome: str | None = None) -> float:
        return sum(u.outcomes.get(outcome, 0.0) if outcome else u.calls for u in self.upstreams.values())

    @property
    def attempts(self) -> float:
        return sum(u.attempts for u in self.upstreams.values())

    def upstream_total(self, measure: str) -> float:
        """``slow``, or a PoolReading field (``queued``, ``queue_seconds``, ``waiting``) over the upstreams."""
        return sum(float(getattr(u, measure) if measure == "slow" else getattr(u.pool, measure))
                   for u in self.upstreams.values())


def read(telemetry: Telemetry, names_by_port: dict[int, str], app_errors: dict[str, int],
         foreign_errors: int = 0) -> Reading:
    """``app_errors`` and ``foreign_errors``: the application's counts, taken before this reading (the
    library counts a call before the application sees its exception, so they never run ahead of it)."""
    points, histograms = _points(telemetry)
    outcomes: dict[str, defaultdict[str, float]] = {n: defaultdict(float) for n in names_by_port.values()}
    attempts: defaultdict[str, float] = defaultdict(float)
    for attrs, value in points.get("hardening.http.client.calls", []):
        name = names_by_port.get(int(attrs.get("server.port", 0)))
        if name:
            outcomes[name][str(attrs.get("hardening.outcome"))] += value
    for attrs, value in points.get("hardening.http.client.attempts", []):
        name = names_by_port.get(int(attrs.get("server.port", 0)))
        if name:
            attempts[name] += value
    circuits: dict[str, str] = {}
    for attrs, value in points.get("hardening.circuit.state", []):
        name = _by_circuit(attrs, names_by_port)
        if name and value:
            circuits[name] = str(attrs.get("hardening.circuit.state"))
    budgets: dict[str, float] = {}
    for attrs, value in points.get("hardening.retry.budget.available", []):
        name = _by_circuit(attrs, names_by_port)
        if name:
            budgets[name] = float(value)
    upstreams = {
        name: UpstreamReading(name, circuits.get(name, "-"), dict(outcomes[name]), attempts[name],
                              budgets.get(name), _pool(name, points, histograms, names_by_port),
                              _quality(name, points, names_by_port),
                              _sum(points, "hardening.http.client.slow_requests", port=_port(name, names_by_port)))
        for name in names_by_port.values()
    }
    outbox = OutboxReading(
        deferred=_sum(points, "hardening.outbox.deferred"),
        replayed=_sum(points, "hardening.outbox.replayed", ("hardening.outbox.outcome", "delivered")),
        dead_lettered=_sum(points, "hardening.outbox.dead_lettered"),
        waiting=_sum(points, "hardening.outbox.depth"),
    )
    report = health.report()
    running = health.running_config()
    snap = resources.snapshot()
    error_count, recent_errors = telemetry.export_errors.snapshot()
    event_count, recent_events = telemetry.events.snapshot()
    return Reading(
        upstreams=upstreams,
        health=str(report.status),
        health_reasons=tuple(_named(reason, names_by_port) for reason in report.reasons),
        rss=snap.memory_usage if snap else None,
        rss_growth_rate=float(snap.growth_rates.get("memory", 0.0)) if snap else 0.0,
        leak_suspected=bool(snap.leaks.get("memory")) if snap else False,
        hunt=_hunt_site(telemetry),
        export_errors=error_count,
        last_export_error=recent_errors[-1] if recent_errors else None,
        events=tuple(_named(line, names_by_port) for line in recent_events),
        events_total=event_count,
        app_errors=dict(app_errors),
        health_time=report.time,
        recovering=tuple(_named(c.name, names_by_port) for c in report.components if RECOVERING in c.reason),
        recovery_hold=running.recovery_hold if running is not None else None,
        outbox=outbox,
        foreign_errors=foreign_errors,
    )


Points = dict[str, list[tuple[dict[str, Any], float]]]


def _sum(points: Points, metric: str, where: tuple[str, str] | None = None, port: int | None = None) -> float:
    return sum(value for attrs, value in points.get(metric, [])
               if (where is None or attrs.get(where[0]) == where[1])
               and (port is None or int(attrs.get("server.port", 0)) == port))


def _port(name: str, names_by_port: dict[int, str]) -> int:
    return next(port for port, named in names_by_port.items() if named == name)


def _pool(name: str, points: Points, histograms: dict[str, list[tuple[dict[str, Any], float, float]]],
          names_by_port: dict[int, str]) -> PoolReading:
    port = _port(name, names_by_port)
    limit = _sum(points, "hardening.http.client.pool.limit", ("hardening.pool.limit", "max_connections"), port)
    queued = [(count, total) for attrs, count, total in histograms.get("http.client.request.time_in_queue", [])
              if int(attrs.get("server.port", 0)) == port]
    return PoolReading(
        active=_sum(points, "http.client.open_connections", ("http.connection.state", "active"), port),
        idle=_sum(points, "http.client.open_connections", ("http.connection.state", "idle"), port),
        max_connections=limit or None,
        waiting=_sum(points, "hardening.http.client.pool.waiting", port=port),
        queued=sum(count for count, _ in queued),
        queue_seconds=sum(total for _, total in queued),
    )


def _quality(name: str, points: Points, names_by_port: dict[int, str]) -> str | None:
    port = _port(name, names_by_port)
    return next((str(attrs.get("hardening.network.quality")) for attrs, value in
                 points.get("hardening.http.client.network.quality", [])
                 if value and int(attrs.get("server.port", 0)) == port), None)


def _named(line: str, names_by_port: dict[int, str]) -> str:
    for port, name in names_by_port.items():
        line = line.replace(f"http://127.0.0.1:{port}", name)
    return line


def _points(telemetry: Telemetry) -> tuple[Points, dict[str, list[tuple[dict[str, Any], float, float]]]]:
    """Every metric's points: (attributes, value), and for histograms (attributes, count, sum)."""
    data = telemetry.reader.get_metrics_data()
    out: Points = {}
    histograms: dict[str, list[tuple[dict[str, Any], float, float]]] = {}
    for rm in data.resource_metrics if data else []:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for point in metric.data.data_points:
                    attrs = dict(point.attributes or {})
                    value = getattr(point, "value", None)
                    if value is not None:
                        out.setdefault(metric.name, []).append((attrs, float(value)))
                    elif hasattr(point, "count") and hasattr(point, "sum"):
                        histograms.setdefault(metric.name, []).append((attrs, float(point.count), float(point.sum)))
    return out, histograms


def _by_circuit(attrs: dict[str, Any], names_by_port: dict[int, str]) -> str | None:
    circuit = str(attrs.get("hardening.circuit.name", ""))
    port = circuit.rsplit(":", 1)[-1]
    return names_by_port.get(int(port)) if port.isdigit() else None


def _hunt_site(telemetry: Telemetry) -> HuntSite | None:
    """The top site of the latest ``hardening.leak.report`` log record, if a hunt has reported."""
    for record in reversed(telemetry.log_records.get_finished_logs()):
        attrs = record.log_record.attributes or {}
        if "hardening.leak.hunt.trigger" in attrs and "code.file.path" in attrs:
            file, line = str(attrs["code.file.path"]), int(str(attrs.get("code.line.number", 0)))
            size = int(str(attrs.get("hardening.leak.size_diff", 0)))
            stamp = record.log_record.timestamp or record.log_record.observed_timestamp or 0
            return HuntSite(file, line, linecache.getline(file, line).strip(), size, stamp)
    return None

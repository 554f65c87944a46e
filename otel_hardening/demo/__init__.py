"""``otel-hardening demo``: the library at work on an embedded default, nothing external needed.

Two embedded fault-injecting upstreams (:mod:`otel_hardening.testing`), hardened httpx clients (sync
and async) calling them, and scripted phases: healthy -> 503 burst -> outage -> recovery -> pool
saturation -> slow memory leak. The async client's charges that fail during the outage are deferred to
an outbox (a SQLite file in a temporary directory, removed at the end) and delivered after recovery. In
the saturation phase inventory answers slowly and more threads call it than its client has connections.
The view shows what the library measured (its metrics, pools and network quality included,
``health.report()``, ``resources.snapshot()``, the leak hunt's log record). With
``OTEL_EXPORTER_OTLP_ENDPOINT`` set everything is also exported over OTLP (traces, metrics every 5 s, logs).
"""

from __future__ import annotations

import socket
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.live import Live

import otel_hardening
from otel_hardening import resources
from otel_hardening.demo import _otel
from otel_hardening.demo._leak import ResponseCache
from otel_hardening.demo._readings import OUTCOME_COLUMNS, OutboxReading, Reading, read
from otel_hardening.demo._scenario import (
    LEAK_TOTAL,
    PHASES,
    POOL_SIZE,
    POOL_TIMEOUT,
    SURGE_WORKERS,
    Timeline,
    Upstreams,
    auto_time_scale,
    library_config,
    outbox_policy,
)
from otel_hardening.demo._traffic import Traffic
from otel_hardening.demo._view import PLAIN_WIDTH, PhaseResult, View
from otel_hardening.outbox import Outbox

__all__ = ["DemoError", "DemoOptions", "run"]

DEFAULT_DURATION = 120.0
MIN_DURATION = 10.0


class DemoError(Exception):
    """Bad options or an environment the demo cannot run in; the message is one line for the user."""


@dataclass(frozen=True)
class DemoOptions:
    duration: float = DEFAULT_DURATION
    phases: tuple[str, ...] = tuple(p.name for p in PHASES)
    plain: bool = False
    health_endpoint: tuple[str, int] | None = None
    time_scale: float | None = None
    """Production durations (leak window, sampler interval, hunt, health window) divided by this;
    None: chosen so the leak detector's window is 40% of the leak phase."""
    loop: bool = False
    """Walk the phases again and again until interrupted (compose)."""


def _check_port_free(host: str, port: int) -> None:
    if port == 0:
        return
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError as exc:
            raise DemoError(f"--health-endpoint {host}:{port}: cannot listen there ({exc.strerror})") from None


def run(options: DemoOptions, console: Console | None = None) -> int:
    if options.duration < MIN_DURATION:
        raise DemoError(f"--duration {options.duration:g}: at least {MIN_DURATION:g} seconds are needed "
                        "to walk the phases")
    if options.time_scale is not None and options.time_scale < 1:
        raise DemoError(f"--time-scale {options.time_scale:g}: expected a number >= 1 (1 = production timings)")
    if options.health_endpoint is not None:
        _check_port_free(*options.health_endpoint)
    by_name = {p.name: p for p in PHASES}
    timeline = Timeline.plan(tuple(by_name[n] for n in options.phases), options.duration)
    scale = options.time_scale or auto_time_scale(timeline)
    if console is None:
        # plain: logs and CI, no terminal; wide enough that the summary table is never squeezed
        console = Console(width=PLAIN_WIDTH, no_color=True, highlight=False) if options.plain else Console()
    try:
        telemetry = _otel.setup()
    except _otel.OtlpNotInstalled as exc:
        raise DemoError(str(exc)) from None
    config = library_config(timeline, scale, options.health_endpoint)
    store = tempfile.TemporaryDirectory(prefix="otel-hardening-demo-")
    outbox = Outbox(str(Path(store.name) / "demo.outbox.sqlite3"), name="demo", policy=outbox_policy(timeline),
                    tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider)
    otel_hardening.install(config, tracer_provider=telemetry.tracer_provider,
                           meter_provider=telemetry.meter_provider, logger_provider=telemetry.logger_provider,
                           outbox=outbox)
    upstreams = Upstreams()
    names_by_port = {server.port: name for name, server in upstreams.servers.items()}
    surge = SURGE_WORKERS if "saturation" in (p.name for p in timeline.phases) else 0
    traffic = Traffic(upstreams.url("inventory"), upstreams.url("payments"), pool_size=POOL_SIZE,
                      pool_timeout=POOL_TIMEOUT, surge_workers=surge)
    view = View(console, options.plain, timeline.phases)
    if options.plain:
        where = f", OTLP to {telemetry.otlp_endpoint}" if telemetry.otlp_endpoint else ""
        health = (f", health on http://{options.health_endpoint[0]}:{options.health_endpoint[1]}/healthz"
                  if options.health_endpoint else "")
        console.print(f"otel-hardening demo {otel_hardening.__version__}: {timeline.duration:.0f} s, "
                      f"time scale {scale:.0f}x{where}{health}", markup=False, highlight=False)
    try:
        traffic.start()
        runner = _Runner(timeline, upstreams, traffic, view, telemetry, names_by_port, options,
                         config.resources.hunt_duration)
        results, final = runner.walk()
    except KeyboardInterrupt:
        console.print("interrupted", markup=False)
        return 130
    finally:
        traffic.close()
        otel_hardening.uninstall()
        outbox.close()
        store.cleanup()
        upstreams.close()
        telemetry.shutdown()
    console.print()
    console.print(view.summary(results, final))
    return 0


class _Runner:
    def __init__(self, timeline: Timeline, upstreams: Upstreams, traffic: Traffic, view: View,
                 telemetry: _otel.Telemetry, names_by_port: dict[int, str], options: DemoOptions,
                 hunt_seconds: float) -> None:
        self.timeline, self.upstreams, self.traffic, self.view = timeline, upstreams, traffic, view
        self.telemetry, self.names_by_port, self.options = telemetry, names_by_port, options
        self.hunt_seconds = hunt_seconds
        self.cache = ResponseCache()
        self._leak_stop: threading.Event | None = None
        self._leak_thread: threading.Thread | None = None

    def reading(self) -> Reading:
        app_errors, foreign = self.traffic.errors()  # before the metrics: the app never runs ahead of them
        return read(self.telemetry, self.names_by_port, app_errors, foreign)

    def walk(self) -> tuple[list[PhaseResult], Reading]:
        refresh = 0.25
        plain_every = max(1.0, self.timeline.duration / 25)
        start = time.monotonic()
        first = self.reading()
        rss_start = first.rss
        results: list[PhaseResult] = []
        current: PhaseResult | None = None
        current_index = -1
        before = first
        last_plain = -plain_every
        live = None if self.options.plain else Live(console=self.view.console, refresh_per_second=4, transient=False)
        if live is not None:
            live.start()
        try:
            while True:
                elapsed = time.monotonic() - start
                done = elapsed >= self.timeline.duration
                index, into = self.timeline.at(elapsed)
                reading = self.reading()
                if current is not None:
                    current.observe(reading)
                    if done or index != current_index:
                        reading = self._settle_outbox(current, self._settle_hunt(current, reading))
                        reading = self._settle_surge(current, reading)
                        self._finish(current, before, reading)
                        results.append(current)
                        before, current = reading, None
                        if done:
                            if not self.options.loop:
                                return results, reading
                            self.view.console.print(self.view.summary(results, reading))
                            start, results, index, into = time.monotonic(), [], 0, 0.0
                            self.traffic.forget_deferred()  # bounded: one walk's charges at a time
                            self.upstreams.charges.clear()
                if current is None:
                    current, current_index = self._enter(index, reading), index
                phase = self.timeline.phases[index]
                length = self.timeline.seconds[index]
                if live is not None:
                    live.update(self.view.frame(reading, phase, index, into, length, elapsed, rss_start))
                else:
                    self.view.news(reading, elapsed)
                    if elapsed - last_plain >= plain_every:
                        last_plain = elapsed
                        self.view.status_line(reading, phase, elapsed)
                time.sleep(refresh)
        finally:
            self._stop_leak()
            if live is not None:
                live.stop()

    def _enter(self, index: int, reading: Reading) -> PhaseResult:
        phase = self.timeline.phases[index]
        length = self.timeline.seconds[index]
        self._stop_leak()
        self.upstreams.enter(phase.name)
        if phase.name == "leak":
            self._start_leak(LEAK_TOTAL / length)
        if phase.name == "saturation":
            self.traffic.surge()
        if self.options.plain:
            self.view.phase_started(phase, index, length)
        return PhaseResult(phase, length, hunt_before=reading.hunt)

    def _settle_hunt(self, result: PhaseResult, reading: Reading) -> Reading:
        """A leak flagged late in its phase (a loaded machine): wait for its hunt before moving on.

        ``resources.hunt()`` joins the automatic hunt if it runs, else hunts while the leak still
        grows; either way the report is the library's own, read back from its log record.
        """
        if result.phase.name != "leak" or not result.leak_seen or result.hunt is not None:
            return reading
        resources.hunt(self.hunt_seconds)
        reading = self.reading()
        result.observe(reading)
        return reading

    def _settle_outbox(self, result: PhaseResult, reading: Reading) -> Reading:
        """Recovery ended with deferred charges still waiting (a loaded machine): give the replays up to
        the phase's length again, watching the library's own depth gauge, before checking delivery."""
        if result.phase.name != "recovery" or not self.traffic.deferred():
            return reading
        deadline = time.monotonic() + result.seconds
        while reading.outbox.waiting and time.monotonic() < deadline:
            time.sleep(0.25)
            reading = self.reading()
        return reading

    def _settle_surge(self, result: PhaseResult, reading: Reading) -> Reading:
        """The saturation phase ends: its extra callers finish their calls and stop, and the waits of the
        others end (served or timed out) before the last reading, so that every PoolTimeout the
        application saw is in the reading, and none of the library's is still on its way to the app."""
        if result.phase.name != "saturation":
            return reading
        self.upstreams.enter("healthy")  # calls still under way end as slow ones, new ones are fast
        self.traffic.calm()
        time.sleep(POOL_TIMEOUT + 0.25)
        reading = self.reading()
        result.observe(reading)
        return reading

    def _finish(self, result: PhaseResult, before: Reading, after: Reading) -> None:
        a, b = after.outbox, before.outbox
        result.outbox = OutboxReading(a.deferred - b.deferred, a.replayed - b.replayed,
                                      a.dead_lettered - b.dead_lettered, a.waiting)
        keys = self.traffic.deferred()
        if result.phase.name == "recovery" and keys:
            result.delivery = (len(keys), self.upstreams.charges.missing(keys), self.upstreams.charges.duplicates)
        result.outcomes = {o: after.total(o) - before.total(o) for o in OUTCOME_COLUMNS}
        result.attempts = after.attempts - before.attempts
        result.end_circuits = {name: u.circuit for name, u in after.upstreams.items()}
        result.held = bool(after.recovering)
        result.slow = after.upstream_total("slow") - before.upstream_total("slow")
        result.queued = after.upstream_total("queued") - before.upstream_total("queued")
        result.queue_seconds = after.upstream_total("queue_seconds") - before.upstream_total("queue_seconds")
        result.app_pool_timeouts = after.app_errors.get("PoolTimeout", 0)
        result.library_pool_timeouts = after.total("pool_timeout")
        result.foreign_errors = after.foreign_errors - before.foreign_errors

    def _start_leak(self, rate: float) -> None:
        self._leak_stop = threading.Event()
        self._leak_thread = threading.Thread(target=self.cache.leak, args=(rate, self._leak_stop),
                                             name="demo-leak", daemon=True)
        self._leak_thread.start()

    def _stop_leak(self) -> None:
        if self._leak_stop is not None and self._leak_thread is not None:
            self._leak_stop.set()
            self._leak_thread.join(5)
            self._leak_stop = self._leak_thread = None
        self.cache.clear()  # the fix: memory comes back

"""The gauges (read with the SDK's InMemoryMetricReader) and the change log records."""

from __future__ import annotations

import pytest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

from otel_hardening import health
from otel_hardening.health import HealthConfig, Status
from otel_hardening.health._metrics import HealthMetrics, emit_change
from otel_hardening.health._runtime import Monitor
from tests.conftest import Otel
from tests.health.conftest import FakeClock, Snap


def one_hot(otel: Otel, metric: str, **attrs: str) -> dict[str, int]:
    return {a["hardening.health.state"]: v for a, v in otel.points(metric)
            if all(a.get(k) == w for k, w in attrs.items())}


def test_status_gauges_are_one_hot(otel: Otel, clock: FakeClock) -> None:
    state = ["closed"]
    monitor = Monitor(HealthConfig(recovery_hold=0), clock=clock, resources=lambda: None,
                      upstreams=lambda: [Snap("http://api:80", "api", state[0])], on_change=lambda p, r: None)
    HealthMetrics(lambda: monitor.latest, otel.meter_provider)
    assert otel.points("hardening.health.status") == []  # nothing evaluated yet: no series
    monitor.evaluate()
    assert one_hot(otel, "hardening.health.status") == {"healthy": 1, "degraded": 0, "critical": 0}
    state[0] = "open"
    monitor.evaluate()
    assert one_hot(otel, "hardening.health.status") == {"healthy": 0, "degraded": 0, "critical": 1}
    circuit = one_hot(otel, "hardening.health.component.status",
                      **{"hardening.health.component": "http://api:80:circuit"})
    assert circuit == {"healthy": 0, "degraded": 0, "critical": 1}
    export = one_hot(otel, "hardening.health.component.status",
                     **{"hardening.health.component": "telemetry:export"})
    assert export == {"healthy": 1, "degraded": 0, "critical": 0}
    keys = {frozenset(a) for a, _ in otel.points("hardening.health.component.status")}
    assert keys == {frozenset({"hardening.health.component", "hardening.health.state"})}


def test_change_log_record(clock: FakeClock) -> None:
    exporter = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    state = ["closed"]
    monitor = Monitor(HealthConfig(recovery_hold=0), clock=clock, resources=lambda: None,
                      upstreams=lambda: [Snap("http://api:80", "api", state[0])], logger_provider=provider)
    monitor.evaluate()
    monitor.evaluate()  # no change: no record
    state[0] = "open"
    monitor.evaluate()
    state[0] = "closed"
    monitor.evaluate()
    records = [r.log_record for r in exporter.get_finished_logs()]
    assert [(r.attributes or {}).get("hardening.health.state") for r in records] == [
        "healthy", "critical", "healthy"]
    crit = records[1]
    assert crit.event_name == "hardening.health.change"
    assert crit.severity_text == "ERROR"
    assert (crit.attributes or {})["hardening.health.previous_state"] == "healthy"
    assert list((crit.attributes or {})["hardening.health.reasons"]) == [  # type: ignore[arg-type]
        "http://api:80:circuit: circuit open: calls are rejected"]
    assert crit.body == "health healthy -> critical: http://api:80:circuit: circuit open: calls are rejected"
    assert records[0].severity_text == "INFO" and (records[0].attributes or {})[
        "hardening.health.previous_state"] == "unknown"
    provider.shutdown()


def test_broken_logger_provider_does_not_raise(clock: FakeClock) -> None:
    class Broken:
        def get_logger(self, name: str) -> object:
            raise RuntimeError("no")

    report = Monitor(HealthConfig(), clock=clock, resources=lambda: None, upstreams=list).evaluate()
    emit_change(Broken(), None, report)  # logged once, not raised


def test_start_publishes_gauges_and_report_is_public(otel: Otel) -> None:
    health.start(HealthConfig(interval=60), meter_provider=otel.meter_provider)
    report = health.report()
    assert report.status is Status.HEALTHY and report.since <= report.time
    assert {c.name for c in report.components} >= {"telemetry:export"}
    assert one_hot(otel, "hardening.health.status") == {"healthy": 1, "degraded": 0, "critical": 0}
    health.stop()
    assert otel.points("hardening.health.status") == []  # stopped: no stale series
    health.start(HealthConfig(interval=60), meter_provider=otel.meter_provider)  # no duplicate gauges
    assert one_hot(otel, "hardening.health.status") == {"healthy": 1, "degraded": 0, "critical": 0}


def test_report_without_start_evaluates_on_demand() -> None:
    report = health.report()
    assert report.status is Status.HEALTHY
    assert health._monitor is None


def test_disabled_config_starts_nothing() -> None:
    health.start(HealthConfig(enabled=False))
    assert health._monitor is None


def test_change_inside_a_recording_span_adds_a_span_event(otel: Otel, clock: FakeClock) -> None:
    monitor = Monitor(HealthConfig(recovery_hold=0), clock=clock, resources=lambda: None,
                      upstreams=lambda: [Snap("http://api:80", "api", "open")])
    with otel.tracer_provider.get_tracer("t").start_as_current_span("request"):
        monitor.evaluate()
    (span,) = otel.finished("request")
    (event,) = span.events
    assert event.name == "hardening.health.change"
    assert dict(event.attributes or {})["hardening.health.state"] == "critical"


def test_start_failure_leaves_health_off_and_detached(monkeypatch: pytest.MonkeyPatch) -> None:
    import logging

    def broken(self: Monitor) -> None:
        self.export.attach()
        raise RuntimeError("thread limit")

    monkeypatch.setattr(Monitor, "start", broken)
    before = list(logging.getLogger("opentelemetry").handlers)
    health.start(HealthConfig(interval=60))  # must not raise
    assert health._monitor is None
    assert logging.getLogger("opentelemetry").handlers == before


def test_report_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: Monitor) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(Monitor, "evaluate", broken)
    report = health.report()
    assert report.status is Status.DEGRADED and report.components[0].name == "health:evaluation"


def test_ready_gauge_and_ready_on_change_records(otel: Otel, clock: FakeClock) -> None:
    exporter = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    state = ["closed"]
    required: list[str] = []

    monitor = Monitor(HealthConfig(recovery_hold=0, required=frozenset({"db"})), clock=clock,
                      resources=lambda: None, logger_provider=provider,
                      upstreams=lambda: [Snap("http://api:80", "api", state[0]),
                                         Snap("http://db:80", "db", required[0] if required else "closed")])
    HealthMetrics(lambda: monitor.latest, otel.meter_provider)
    assert otel.points("hardening.health.ready") == []
    monitor.evaluate()
    assert otel.points("hardening.health.ready") == [({}, 1)]
    state[0] = "open"  # optional upstream down: critical, still ready
    monitor.evaluate()
    assert otel.points("hardening.health.ready") == [({}, 1)]
    required.append("open")  # the required one too: still critical, now not ready -> its own record
    report = monitor.evaluate()
    assert report.status is Status.CRITICAL and not report.ready
    assert otel.points("hardening.health.ready") == [({}, 0)]
    records = [r.log_record for r in exporter.get_finished_logs()]
    assert [((r.attributes or {})["hardening.health.state"], (r.attributes or {})["hardening.health.ready"])
            for r in records] == [("healthy", True), ("critical", True), ("critical", False)]
    body = records[-1].body
    assert isinstance(body, str) and body.startswith("health critical -> critical (not ready): ")
    provider.shutdown()


def test_a_leak_verdict_flip_re_evaluates_at_once() -> None:
    """The resource sampler tells health when a leak verdict flips; health does not wait its interval."""
    import time
    from types import MappingProxyType

    from otel_hardening.resources import _sampler

    leak = [False]

    class Snapshot:
        fd_usage_ratio = memory_usage = memory_limit = last_hunt = None
        sampler_alive = True

        @property
        def leaks(self) -> dict[str, bool]:
            return {"memory": leak[0]}

        growth_rates = MappingProxyType({"memory": 0.0})

    monitor = Monitor(HealthConfig(interval=60, recovery_hold=0), upstreams=list, resources=Snapshot,
                      on_change=lambda p, r: None)
    monitor.start()
    try:
        assert monitor.latest is not None and monitor.latest.status is Status.HEALTHY
        leak[0] = True
        flipped = time.monotonic()
        _sampler._verdict_changed()  # what Sampler.tick() calls when a tracker flips
        while monitor.latest.status is not Status.DEGRADED:
            assert time.monotonic() - flipped < 1.0, "health waited for its interval"
            time.sleep(0.002)
        assert time.monotonic() - flipped < 0.1
    finally:
        monitor.stop()

"""Health from real breaker states: a hardened httpx client against a faulty loopback upstream."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

import otel_hardening
from otel_hardening.config import CircuitPolicy, RetryPolicy
from otel_hardening.health import HealthConfig, HealthReport, Status
from otel_hardening.health._runtime import Monitor
from otel_hardening.testing import FlakyUpstream, Reply
from tests.health.conftest import FakeClock


def circuit_of(report: HealthReport, server: FlakyUpstream) -> Status:
    return {c.name: c.status for c in report.components}[f"{server.url}:circuit"]


def wait_for(predicate: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_open_half_open_closed_drive_critical_degraded_healthy(server: FlakyUpstream, clock: FakeClock) -> None:
    server.default = Reply(503)
    client = otel_hardening.harden(httpx.Client(base_url=server.url),
                                   circuit=CircuitPolicy(fail_max=2, reset_timeout=0.5),
                                   retry=RetryPolicy(max_attempts=1))
    monitor = Monitor(HealthConfig(recovery_hold=30), clock=clock, resources=lambda: None)
    changes: list[tuple[Status | None, Status]] = []
    monitor._on_change = lambda prev, rep: changes.append((prev, rep.status))
    with client:
        assert monitor.evaluate().status is Status.HEALTHY
        for _ in range(2):
            assert client.get("/").status_code == 503
        with pytest.raises(otel_hardening.CircuitOpenError):
            client.get("/")
        report = monitor.evaluate()
        assert report.status is Status.CRITICAL and circuit_of(report, server) is Status.CRITICAL
        assert "circuit open" in report.reasons[0]

        # After the reset timeout one trial request is let through; while it is in flight: half-open.
        time.sleep(0.6)
        server.default = Reply(200, delay=1.0)
        trial = threading.Thread(target=client.get, args=("/",))
        trial.start()
        wait_for(lambda: server.in_flight == 1)
        clock.advance(1)
        report = monitor.evaluate()
        raw = {c.name: c for c in report.components}[f"{server.url}:circuit"]
        assert raw.observed_value == "half_open"
        assert report.status is Status.CRITICAL  # better, but not yet for 30 s
        trial.join()

        clock.advance(10)
        report = monitor.evaluate()
        assert {c.name: c for c in report.components}[f"{server.url}:circuit"].observed_value == "closed"
        assert report.status is Status.CRITICAL and "recovering" in report.reasons[0]
        clock.advance(20)
        assert monitor.evaluate().status is Status.DEGRADED  # at most degraded since half-open (+30 s)
        clock.advance(10)
        assert monitor.evaluate().status is Status.HEALTHY  # closed for 30 s
    assert changes == [(None, Status.HEALTHY), (Status.HEALTHY, Status.CRITICAL),
                       (Status.CRITICAL, Status.DEGRADED), (Status.DEGRADED, Status.HEALTHY)]


def test_half_open_is_degraded_without_hysteresis(server: FlakyUpstream) -> None:
    server.default = Reply(503)
    client = otel_hardening.harden(httpx.Client(base_url=server.url),
                                   circuit=CircuitPolicy(fail_max=2, reset_timeout=0.3),
                                   retry=RetryPolicy(max_attempts=1))
    monitor = Monitor(HealthConfig(recovery_hold=0), resources=lambda: None, on_change=lambda p, r: None)
    with client:
        client.get("/")
        client.get("/")
        assert monitor.evaluate().status is Status.CRITICAL
        time.sleep(0.4)
        server.default = Reply(200, delay=1.0)
        trial = threading.Thread(target=client.get, args=("/",))
        trial.start()
        wait_for(lambda: server.in_flight == 1)
        report = monitor.evaluate()
        assert report.status is Status.DEGRADED and circuit_of(report, server) is Status.DEGRADED
        trial.join()
        assert monitor.evaluate().status is Status.HEALTHY


def test_noncritical_upstream_open_circuit_is_only_degraded(server: FlakyUpstream) -> None:
    server.default = Reply(503)
    client = otel_hardening.harden(httpx.Client(base_url=server.url),
                                   circuit=CircuitPolicy(fail_max=2, reset_timeout=60),
                                   retry=RetryPolicy(max_attempts=1))
    monitor = Monitor(HealthConfig(noncritical=frozenset({"127.0.0.1"})), resources=lambda: None,
                      on_change=lambda p, r: None)
    with client:
        client.get("/")
        client.get("/")
    report = monitor.evaluate()
    assert report.status is Status.DEGRADED
    assert circuit_of(report, server) is Status.DEGRADED


def test_retry_pressure_from_real_retries(server: FlakyUpstream) -> None:
    # Every call fails once with 503 and succeeds on the retry: retry ratio 0.5, no failed calls.
    client = otel_hardening.harden(httpx.Client(base_url=server.url),
                                   circuit=CircuitPolicy(fail_max=100),
                                   retry=RetryPolicy(max_attempts=2, backoff_initial=0.001,
                                                     backoff_max=0.001))
    monitor = Monitor(HealthConfig(min_calls=5), resources=lambda: None, on_change=lambda p, r: None)
    with client:
        for _ in range(6):
            server.then(Reply(503), Reply(200))
            assert client.get("/").status_code == 200
    comps = {c.name: c for c in monitor.evaluate().components}
    assert comps[f"{server.url}:retries"].status is Status.DEGRADED
    assert comps[f"{server.url}:retries"].observed_value == 0.5
    assert comps[f"{server.url}:errors"].status is Status.HEALTHY

"""Health-change log records carry the trace of the request that caused the change (the request whose
failure opened a circuit, the trial whose success closed it), so the logs backend finds them by trace
id; a change no request caused carries none. Real breaker, loopback upstream, in-memory exporters."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.trace import format_trace_id

from otel_hardening.config import CircuitPolicy, RetryPolicy
from otel_hardening.health import HealthConfig, Status
from otel_hardening.health._cause import MAX_CAUSES, CircuitCauses
from otel_hardening.health._runtime import Monitor
from otel_hardening.http import transitions
from otel_hardening.testing import FlakyUpstream, Reply
from tests.conftest import Otel
from tests.health.conftest import FakeClock, Snap


@pytest.fixture
def monitor(otel: Otel, clock: FakeClock) -> Iterator[Monitor]:
    monitor = Monitor(HealthConfig(recovery_hold=0), clock=clock, resources=lambda: None,
                      logger_provider=otel.logger_provider)
    remove = transitions.add_transition_listener(monitor.causes.record)
    yield monitor
    remove()


def changes(otel: Otel) -> list[ReadableLogRecord]:
    return [r for r in otel.log_records.get_finished_logs() if r.log_record.event_name == "hardening.health.change"]


def traced_get(otel: Otel, client: httpx.Client, url: str) -> int:
    """One request inside an incoming-request span, as a traced web app makes it; its trace id."""
    with otel.tracer_provider.get_tracer("app").start_as_current_span("GET /checkout") as span:
        client.get(url)
        return span.get_span_context().trace_id


def test_the_change_record_carries_the_trace_of_the_request_that_moved_the_circuit(
        otel: Otel, monitor: Monitor, server: FlakyUpstream) -> None:
    client = otel.harden(httpx.Client(timeout=5), retry=RetryPolicy(max_attempts=1),
                         circuit=CircuitPolicy(fail_max=2, reset_timeout=0.3))
    with client:
        monitor.evaluate()
        server.default = Reply(503)
        traced_get(otel, client, server.url)  # one failure: the circuit stays closed
        opened_by = traced_get(otel, client, server.url)
        assert monitor.evaluate().status is Status.CRITICAL
        time.sleep(0.4)
        server.default = Reply(200)
        closed_by = traced_get(otel, client, server.url)  # the trial succeeds: closed
        assert monitor.evaluate().status is Status.HEALTHY
    first, opened, closed = changes(otel)
    assert first.log_record.trace_id in (0, None)  # the first evaluation: nothing caused it
    assert (opened.log_record.attributes or {})["hardening.health.state"] == "critical"
    assert format_trace_id(opened.log_record.trace_id or 0) == format_trace_id(opened_by)
    assert format_trace_id(closed.log_record.trace_id or 0) == format_trace_id(closed_by)
    spans = {s.context.span_id for s in otel.finished() if s.context.trace_id == opened_by}
    assert opened.log_record.span_id in spans


def test_a_change_without_a_causing_request_has_no_trace(otel: Otel, clock: FakeClock) -> None:
    """An untraced transition (no span around the request) and a change no transition caused (here a
    circuit seen open in a snapshot) leave the record without a trace id."""
    state = ["closed"]
    monitor = Monitor(HealthConfig(recovery_hold=0), clock=clock, resources=lambda: None,
                      upstreams=lambda: [Snap("http://api:80", "api", state[0])], logger_provider=otel.logger_provider)
    monitor.evaluate()
    monitor.causes.record("http://api:80", "closed", "open")  # outside any span
    state[0] = "open"
    monitor.evaluate()
    assert [r.log_record.trace_id or 0 for r in changes(otel)] == [0, 0]


def test_causes_stay_bounded_and_keep_the_latest_per_upstream(otel: Otel) -> None:
    causes = CircuitCauses()
    tracer = otel.tracer_provider.get_tracer("app")
    for i in range(MAX_CAUSES + 10):
        with tracer.start_as_current_span("request"):
            causes.record(f"http://u{i}:80", "closed", "open")
    assert len(causes._latest) == MAX_CAUSES
    assert "http://u0:80" not in causes._latest and f"http://u{MAX_CAUSES + 9}:80" in causes._latest
    causes.record(f"http://u{MAX_CAUSES + 9}:80", "open", "half_open")  # untraced: forgets the older cause
    assert f"http://u{MAX_CAUSES + 9}:80" not in causes._latest

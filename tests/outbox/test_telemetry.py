"""What the outbox shows: metrics, replay spans linked to the deferred request's trace, health
components, and never a stored secret (URL path or query, headers, body) in any of them or in logs."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import httpx
import pytest

import otel_hardening
from otel_hardening import CircuitPolicy, RetryPolicy
from otel_hardening.health import Status
from otel_hardening.outbox import Outbox, OutboxPolicy, RequestDeferred, _health
from otel_hardening.testing import HardeningTelemetry
from tests.outbox.conftest import Ledger
from tests.outbox.test_delivery import wait_for

SECRETS = ("s3cr3t-path", "tok-123", "Bearer abc", "body-secret")


def make(tmp_path: Path, otel: HardeningTelemetry, **policy: object) -> tuple[Outbox, httpx.Client]:
    outbox = Outbox(str(tmp_path / "o.sqlite3"), name="tel", before_replay=lambda r: r,
                    policy=OutboxPolicy(backoff_initial=0.05, backoff_max=0.2, poll=0.2, **policy),  # type: ignore[arg-type]
                    tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider)
    client = otel_hardening.harden(httpx.Client(timeout=5), retry=RetryPolicy(max_attempts=1),
                                   circuit=CircuitPolicy(fail_max=100), outbox=outbox,
                                   tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider)
    return outbox, client


def test_metrics_spans_and_logs(tmp_path: Path, otel: HardeningTelemetry, ledger: Ledger,
                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="otel_hardening")
    outbox, client = make(tmp_path, otel)
    outbox.stop()
    ledger.down = True
    tracer = otel.tracer_provider.get_tracer("app")
    originals = []
    for n in range(3):
        with tracer.start_as_current_span("app.order") as span, pytest.raises(RequestDeferred):
            client.post(f"{ledger.url}/s3cr3t-path/{n}?token=tok-123", content=b"body-secret",
                        headers={"Authorization": "Bearer abc"})
        originals.append(span.get_span_context())
    attrs = {"hardening.outbox.name": "tel"}
    assert otel.total("hardening.outbox.deferred", **attrs) == 3
    assert otel.total("hardening.outbox.depth", **attrs) == 3
    assert otel.total("hardening.outbox.size", **attrs) > 3 * len(b"body-secret")
    assert otel.total("hardening.outbox.oldest_age", **attrs) >= 0
    assert otel.total("hardening.outbox.dead_letters", **attrs) == 0
    ledger.down = False
    outbox.start()
    wait_for(lambda: len(ledger.applied) == 3)
    wait_for(lambda: otel.total("hardening.outbox.replayed", **{"hardening.outbox.outcome": "delivered"}) == 3)
    time.sleep(1.1)  # the gauges read the store at most once a second
    assert otel.total("hardening.outbox.depth", **attrs) == 0
    replays = otel.finished("hardening.outbox.replay")
    assert len(replays) == 3
    assert sorted(link.context.trace_id for s in replays for link in s.links) == sorted(
        c.trace_id for c in originals)  # each replay links to the trace of the request it replays
    assert all(s.attributes["hardening.outbox.outcome"] == "delivered" for s in replays)  # type: ignore[index]
    shown = repr([(s.name, dict(s.attributes or {}), [dict(e.attributes or {}) for e in s.events])
                  for s in otel.finished()])
    shown += repr(otel.reader.get_metrics_data()) + caplog.text
    for secret in SECRETS:
        assert secret not in shown
    outbox.close()


def test_health_backlog_and_dead_letters(tmp_path: Path, otel: HardeningTelemetry, ledger: Ledger) -> None:
    outbox, client = make(tmp_path, otel, backlog_age_degraded=0.3, max_replays=1)
    outbox.stop()
    assert {c.name: c.status for c in _health.components(0)} == {
        "outbox:backlog": Status.HEALTHY, "outbox:dead_letters": Status.HEALTHY}
    ledger.down = True
    with pytest.raises(RequestDeferred):
        client.post(f"{ledger.url}/w", content=b"x")
    time.sleep(1.1)
    found = {c.name: c for c in _health.components(0)}
    assert found["outbox:backlog"].status is Status.DEGRADED
    assert "1 requests waiting" in found["outbox:backlog"].reason
    outbox.start()  # one failed replay: dead letter
    wait_for(lambda: outbox.store.stats().dead == 1)
    time.sleep(1.1)
    found = {c.name: c for c in _health.components(0)}
    assert found["outbox:dead_letters"].status is Status.DEGRADED
    assert found["outbox:backlog"].status is Status.HEALTHY
    outbox.close()
    assert _health.components(0) == []


def test_the_health_report_has_the_outbox(tmp_path: Path, otel: HardeningTelemetry) -> None:
    from otel_hardening.health import HealthConfig
    from otel_hardening.health._runtime import Monitor

    outbox, _ = make(tmp_path, otel)
    report = Monitor(HealthConfig(), on_change=lambda previous, report: None).evaluate()
    assert {"outbox:backlog", "outbox:dead_letters"} <= {c.name for c in report.components}
    outbox.close()

"""HardeningTelemetry's readers return what the layer emitted, and nothing else."""

from __future__ import annotations

import httpx
import pytest

from otel_hardening import CircuitOpenError, CircuitPolicy, RetryPolicy
from otel_hardening.testing import FlakyUpstream, HardeningTelemetry, Reply


def test_outcomes_transitions_and_metrics(flaky_upstream: FlakyUpstream,
                                          hardening_telemetry: HardeningTelemetry) -> None:
    t = hardening_telemetry
    client = t.harden(httpx.Client(), retry=RetryPolicy(max_attempts=1),
                      circuit=CircuitPolicy(fail_max=2, reset_timeout=60))
    assert client.get(flaky_upstream.url).status_code == 200
    assert t.retried_requests() == [] and t.finished("hardening.request") == []  # nothing to act on
    flaky_upstream.always(Reply(503))
    client.get(flaky_upstream.url)
    client.get(flaky_upstream.url)
    with pytest.raises(CircuitOpenError):
        client.get(flaky_upstream.url)

    assert t.circuit_transitions() == [(flaky_upstream.url, "closed", "open")]
    assert len(t.requests_with_outcome("rejected_circuit_open")) == 1
    assert t.calls() == 4 and t.calls("success") == 1 and t.calls("rejected_circuit_open") == 1
    assert t.total("hardening.http.client.attempts") == 3
    assert t.total("hardening.circuit.state", **{"hardening.circuit.state": "open"}) == 1
    t.clear()
    assert t.finished() == [] and t.calls() == 4  # spans forgotten, metrics cumulative


def test_retried_requests_only_counts_more_than_one_attempt(flaky_upstream: FlakyUpstream,
                                                            hardening_telemetry: HardeningTelemetry) -> None:
    client = hardening_telemetry.harden(httpx.Client(), retry=RetryPolicy(backoff_initial=0.001))
    flaky_upstream.then(Reply(503), Reply(503))
    assert client.get(flaky_upstream.url).status_code == 200
    [span] = hardening_telemetry.retried_requests()
    assert span.attributes is not None and span.attributes["hardening.attempts"] == 3

"""`hardening.retried` on the hardening.request span: the exact tag a trace search (Jaeger) finds
retried requests by, true exactly when a second attempt was sent."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import httpx
import pytest

import otel_hardening
from otel_hardening import CircuitOpenError, CircuitPolicy, RetryPolicy
from otel_hardening.testing import FlakyUpstream, Reply
from tests.conftest import Otel
from tests.http.harness import Harness


def _attrs(span: Any) -> Mapping[str, Any]:
    return dict(span.attributes or {})


@pytest.fixture
def h(mode: str, traced_httpx: Otel) -> Iterator[Harness]:
    harness = Harness(mode, traced_httpx)
    yield harness
    harness.close()


def test_retried_then_succeeded(h: Harness, server: FlakyUpstream, traced_httpx: Otel) -> None:
    server.then(Reply(503))
    assert h.get(server.url).status_code == 200
    (logical,) = [_attrs(s) for s in traced_httpx.finished("hardening.request")]
    assert logical["hardening.retried"] is True
    assert logical["hardening.outcome"] == "success_after_retry"
    resent = [_attrs(s).get("http.request.resend_count") for s in traced_httpx.finished() if s.kind.name == "CLIENT"]
    assert resent == [None, 1]


def test_retried_then_failed(h: Harness, server: FlakyUpstream, traced_httpx: Otel) -> None:
    server.default = Reply(503)
    assert h.get(server.url).status_code == 503
    (logical,) = [_attrs(s) for s in traced_httpx.finished("hardening.request")]
    assert logical["hardening.retried"] is True
    assert logical["hardening.outcome"] == "failure_after_retry"
    assert logical["hardening.attempts"] == 3


def test_not_retried_when_the_circuit_rejects(mode: str, server: FlakyUpstream, traced_httpx: Otel) -> None:
    """A request the open circuit rejects gets the span (hardening acted) and retried=false; so does the
    single failed attempt that opened it under a no-retry policy."""
    harness = Harness(mode, traced_httpx, retry=RetryPolicy(max_attempts=1),
                      circuit=CircuitPolicy(fail_max=1, reset_timeout=30))
    try:
        server.default = Reply(503)
        assert harness.get(server.url).status_code == 503
        with pytest.raises(CircuitOpenError):
            harness.get(server.url)
    finally:
        harness.close()
    spans = {_attrs(s)["hardening.outcome"]: _attrs(s) for s in traced_httpx.finished("hardening.request")}
    assert spans["rejected_circuit_open"]["hardening.retried"] is False
    assert all(attrs["hardening.retried"] is False for attrs in spans.values()), spans
    assert server.hits == 1


def test_failure_after_retry_without_a_resend_is_not_retried(server: FlakyUpstream, otel: Otel) -> None:
    """A retry is scheduled, another request opens the circuit during the wait, and the circuit refuses
    the retry: failure_after_retry with one attempt and retried=false (nothing was resent)."""
    client = otel_hardening.harden(httpx.Client(timeout=5), retry=RetryPolicy(max_attempts=3, deadline=10),
                                   circuit=CircuitPolicy(fail_max=2, reset_timeout=30),
                                   tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider)
    server.default = Reply(503, retry_after=2)
    with client:
        waiting = threading.Thread(target=client.get, args=(server.url,))
        waiting.start()
        deadline = time.monotonic() + 5
        while server.hits < 1:  # the first request got its 503 and waits 2 s to retry
            assert time.monotonic() < deadline, "the first request never reached the upstream"
            time.sleep(0.01)
        assert client.get(server.url).status_code == 503  # the second failure opens the circuit
        waiting.join(10)
    spans = sorted((_attrs(s) for s in otel.finished("hardening.request")), key=lambda a: a["hardening.outcome"])
    assert [(a["hardening.outcome"], a["hardening.attempts"], a["hardening.retried"]) for a in spans] == [
        ("failure", 1, False), ("failure_after_retry", 1, False)]
    assert server.hits == 2

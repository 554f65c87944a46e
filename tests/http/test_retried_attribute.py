"""`hardening.retried` on the hardening.request span: the exact tag a trace search (Jaeger) finds
retried requests by, true exactly when the logical request made more than one attempt."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest

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

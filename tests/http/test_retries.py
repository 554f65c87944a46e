"""The fault matrix, sync and async, on a real loopback server with the OTel httpx instrumentation on."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Iterator

import httpx
import pytest

from otel_hardening import RetryPolicy
from otel_hardening.testing import FlakyUpstream, Reply, closed_port
from tests.conftest import Otel
from tests.http.harness import FAST_RETRY, Harness


@pytest.fixture
def h(mode: str, traced_httpx: Otel) -> Iterator[Harness]:
    harness = Harness(mode, traced_httpx)
    yield harness
    harness.close()


def client_spans(otel: Otel) -> list:
    return [s for s in otel.finished() if s.kind.name == "CLIENT"]


def test_503_burst_then_recovery(h: Harness, server: FlakyUpstream, traced_httpx: Otel) -> None:
    server.then(Reply(503), Reply(503))
    response = h.get(server.url + "/x")
    assert response.status_code == 200
    assert response.text == "ok"
    assert server.hits == 3

    attempts = client_spans(traced_httpx)
    assert len(attempts) == 3
    resend = [s.attributes.get("http.request.resend_count") for s in attempts]
    assert resend == [None, 1, 2]

    (logical,) = traced_httpx.finished("hardening.request")
    assert logical.attributes["hardening.attempts"] == 3
    assert logical.attributes["hardening.outcome"] == "success_after_retry"
    assert logical.attributes["hardening.circuit.name"] == server.url + ""
    assert logical.attributes["hardening.circuit.state"] == "closed"
    retries = [e for e in logical.events if e.name == "hardening.retry"]
    assert [e.attributes["hardening.retry.reason"] for e in retries] == ["503", "503"]
    assert all(0 <= e.attributes["hardening.retry.delay"] <= 0.05 for e in retries)
    # attempts 2 and 3 are children of the logical span; attempt 1 is linked from it
    assert [s.parent.span_id for s in attempts[1:]] == [logical.context.span_id] * 2
    assert logical.links[0].context.span_id == attempts[0].context.span_id

    assert traced_httpx.total("hardening.http.client.calls", **{"hardening.outcome": "success_after_retry"}) == 1
    assert traced_httpx.total("hardening.http.client.retries", **{"error.type": "503"}) == 2
    (delay_point,) = [p for _, p in traced_httpx.points("hardening.http.client.retry.delay")]
    assert delay_point.count == 2
    assert traced_httpx.total("hardening.http.client.attempts") == 3
    (retried,) = [p for _, p in traced_httpx.points("hardening.http.client.retried.attempts")]
    assert (retried.count, retried.sum) == (1, 3)


def test_first_time_success_adds_no_span(h: Harness, server: FlakyUpstream, traced_httpx: Otel) -> None:
    assert h.get(server.url).status_code == 200
    assert [s.kind.name for s in traced_httpx.finished()] == ["CLIENT"]
    assert traced_httpx.total("hardening.http.client.calls", **{"hardening.outcome": "success"}) == 1


def test_exhausted_retries_return_last_response(h: Harness, server: FlakyUpstream, traced_httpx: Otel) -> None:
    server.default = Reply(503)
    response = h.get(server.url)
    assert response.status_code == 503
    assert server.hits == 3
    (logical,) = traced_httpx.finished("hardening.request")
    assert logical.attributes["hardening.outcome"] == "failure_after_retry"
    assert logical.status.status_code.name == "ERROR"
    denied = [e for e in logical.events if e.name == "hardening.retry.denied"]
    assert denied[0].attributes["hardening.retry.denied"] == "max_attempts"


@pytest.mark.parametrize("form", ["delta", "http-date"])
def test_429_retry_after_is_honoured(h: Harness, server: FlakyUpstream, traced_httpx: Otel, form: str) -> None:
    value = "1" if form == "delta" else email.utils.formatdate(time.time() + 2, usegmt=True)
    server.then(Reply(429, headers={"Retry-After": value}))
    started = time.monotonic()
    assert h.get(server.url).status_code == 200
    waited = time.monotonic() - started
    (logical,) = traced_httpx.finished("hardening.request")
    (event,) = [e for e in logical.events if e.name == "hardening.retry"]
    delay = event.attributes["hardening.retry.delay"]
    # the wait is the server's, not the 10-50 ms backoff; an HTTP-date has one-second resolution
    assert delay >= 0.9 and waited >= delay
    assert event.attributes["hardening.retry.reason"] == "429"


def test_retry_after_beyond_the_deadline_is_not_waited_for(mode: str, traced_httpx: Otel,
                                                          server: FlakyUpstream) -> None:
    harness = Harness(mode, traced_httpx, retry=RetryPolicy(max_attempts=3, deadline=2.0))
    server.then(Reply(503, headers={"Retry-After": "5"}))
    try:
        started = time.monotonic()
        assert harness.get(server.url).status_code == 503
        assert time.monotonic() - started < 2.0
    finally:
        harness.close()
    assert server.hits == 1
    (logical,) = traced_httpx.finished("hardening.request")
    denied = [e for e in logical.events if e.name == "hardening.retry.denied"]
    assert denied[0].attributes["hardening.retry.denied"] == "deadline"


def test_connection_refused_is_retried_then_raised(h: Harness, traced_httpx: Otel) -> None:
    with pytest.raises(httpx.ConnectError):
        h.get(f"http://127.0.0.1:{closed_port()}/")
    attempts = client_spans(traced_httpx)
    assert len(attempts) == 3
    assert attempts[2].attributes["http.request.resend_count"] == 2
    assert traced_httpx.total("hardening.http.client.retries", **{"error.type": "ConnectError"}) == 2
    assert traced_httpx.total("hardening.http.client.calls", **{"hardening.outcome": "failure_after_retry"}) == 1


def test_connection_reset_mid_body_reaches_the_caller_as_httpx_error(h: Harness, server: FlakyUpstream,
                                                                   traced_httpx: Otel) -> None:
    # Streams are never held back (issue 8): the body is the caller's, read after the response is
    # handed over, so a reset mid-body is httpx's own error and is not retried.
    server.then(Reply(200, body=b"x" * 5000, reset_after=100))
    server.default = Reply(200, body=b"y" * 5000)
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        h.get(server.url)
    assert server.hits == 1
    assert traced_httpx.total("hardening.http.client.calls", **{"hardening.outcome": "success"}) == 1


def test_read_timeout_is_retried(mode: str, traced_httpx: Otel, server: FlakyUpstream) -> None:
    harness = Harness(mode, traced_httpx, timeout=0.3)
    server.then(Reply(200, delay=1.0))
    try:
        assert harness.get(server.url).status_code == 200
    finally:
        harness.close()
    assert traced_httpx.total("hardening.http.client.retries", **{"error.type": "ReadTimeout"}) == 1


def test_slow_success_is_not_retried(mode: str, traced_httpx: Otel, server: FlakyUpstream) -> None:
    harness = Harness(mode, traced_httpx, timeout=2.0)
    server.then(Reply(200, delay=0.5))
    try:
        assert harness.get(server.url).status_code == 200
    finally:
        harness.close()
    assert server.hits == 1
    assert traced_httpx.total("hardening.http.client.calls", **{"hardening.outcome": "success"}) == 1


def test_post_is_not_retried(h: Harness, server: FlakyUpstream, traced_httpx: Otel) -> None:
    server.then(Reply(503))
    assert h.request("POST", server.url, content=b"pay").status_code == 503
    assert server.hits == 1
    assert traced_httpx.total("hardening.http.client.calls", **{"hardening.outcome": "failure"}) == 1


def test_post_with_idempotency_key_is_retried(h: Harness, server: FlakyUpstream) -> None:
    server.then(Reply(503))
    response = h.request("POST", server.url, content=b"pay", headers={"Idempotency-Key": "k1"})
    assert response.status_code == 200
    assert server.hits == 2
    assert [r[3] for r in server.requests] == [b"pay", b"pay"]  # the body was replayed whole


def test_unreplayable_body_is_not_retried(mode: str, traced_httpx: Otel, server: FlakyUpstream) -> None:
    harness = Harness(mode, traced_httpx, retry=RetryPolicy(max_attempts=3, backoff_initial=0.01,
                                                            retry_non_idempotent=True))
    server.then(Reply(503))

    def body():  # type: ignore[no-untyped-def]
        yield b"chunk"

    async def abody():  # type: ignore[no-untyped-def]
        yield b"chunk"

    try:
        content = abody() if mode == "async" else body()
        assert harness.request("PUT", server.url, content=content).status_code == 503
    finally:
        harness.close()
    assert server.hits == 1


def test_other_4xx_is_neither_retried_nor_a_failure(h: Harness, server: FlakyUpstream, traced_httpx: Otel) -> None:
    server.default = Reply(404)
    for _ in range(10):
        assert h.get(server.url).status_code == 404
    assert server.hits == 10
    assert traced_httpx.total("hardening.http.client.calls", **{"hardening.outcome": "success"}) == 10


def test_500_is_opt_in(mode: str, traced_httpx: Otel, server: FlakyUpstream) -> None:
    server.then(Reply(500))
    harness = Harness(mode, traced_httpx)
    try:
        assert harness.get(server.url).status_code == 500
    finally:
        harness.close()
    server.then(Reply(500))
    opted = Harness(mode, traced_httpx, retry=RetryPolicy(
        backoff_initial=0.01, retry_statuses=FAST_RETRY.retry_statuses | {500}))
    try:
        assert opted.get(server.url).status_code == 200
    finally:
        opted.close()


def test_retries_can_be_disabled_per_request(h: Harness, server: FlakyUpstream) -> None:
    server.then(Reply(503))
    assert h.get(server.url, extensions={"hardening": {"retry": False}}).status_code == 503
    assert server.hits == 1


def test_bad_per_request_option_is_a_clear_error(h: Harness, server: FlakyUpstream) -> None:
    with pytest.raises(ValueError, match="retries"):
        h.get(server.url, extensions={"hardening": {"retries": 0}})


def test_deadline_bounds_the_whole_call(mode: str, traced_httpx: Otel, server: FlakyUpstream) -> None:
    harness = Harness(mode, traced_httpx, timeout=5.0,
                      retry=RetryPolicy(max_attempts=10, backoff_initial=0.2, backoff_max=0.2, deadline=1.0))
    server.default = Reply(200, delay=0.4)
    server.then(Reply(503), Reply(503))
    try:
        started = time.monotonic()
        harness.get(server.url)
    except httpx.ReadTimeout:
        pass  # the last attempt's timeout was cut down to what was left of the deadline
    finally:
        harness.close()
    assert time.monotonic() - started < 1.3

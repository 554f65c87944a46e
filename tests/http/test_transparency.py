"""Transparent to code that knows httpx and OpenTelemetry: per-client instrumentation, transport
inspection, subclassed clients and transports, transport-level mocks (respx)."""

from __future__ import annotations

from typing import Any

import httpcore
import httpx
import pytest
import respx
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

import otel_hardening
from otel_hardening import RetryPolicy
from otel_hardening.testing import FlakyUpstream, Reply
from tests.conftest import Otel
from tests.http.harness import FAST_RETRY, NO_BUDGET_LIMIT, Harness


def hardened(mode: str, otel: Otel) -> Harness:
    return Harness(mode, otel, retry=FAST_RETRY, budget=NO_BUDGET_LIMIT)


def client_of(h: Harness) -> httpx.Client | httpx.AsyncClient:
    return h.aclient if h.mode == "async" else h.client


def client_spans(otel: Otel) -> list[Any]:
    return [s for s in otel.finished() if s.kind.name == "CLIENT"]


def test_instrument_client_gives_one_client_span_per_attempt(mode: str, otel: Otel,
                                                             server: FlakyUpstream) -> None:
    h = hardened(mode, otel)
    HTTPXClientInstrumentor.instrument_client(client_of(h), tracer_provider=otel.tracer_provider)
    server.then(Reply(503))
    assert h.get(server.url).status_code == 200
    attempts = client_spans(otel)
    assert len(attempts) == 2
    assert [s.attributes.get("http.request.resend_count") for s in attempts] == [None, 1]
    (logical,) = otel.finished("hardening.request")
    assert "http.request.resend_count" not in (logical.attributes or {})

    HTTPXClientInstrumentor.uninstrument_client(client_of(h))
    otel.spans.clear()
    server.then(Reply(503))
    assert h.get(server.url).status_code == 200
    assert client_spans(otel) == []
    assert len(otel.finished("hardening.request")) == 1  # hardening itself is still on
    h.close()


def test_code_that_inspects_the_transport_keeps_working(mode: str, otel: Otel) -> None:
    h = hardened(mode, otel)
    client = client_of(h)
    expected = httpx.AsyncHTTPTransport if mode == "async" else httpx.HTTPTransport
    assert isinstance(client._transport, expected)
    pool = client._transport._pool  # type: ignore[union-attr]
    assert isinstance(pool, (httpcore.ConnectionPool, httpcore.AsyncConnectionPool))
    h.close()


class CountingTransport(httpx.HTTPTransport):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        return super().handle_request(request)


class AuditedClient(httpx.Client):
    """A subclass that overrides the per-request step and send(), as SDKs built on httpx do."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.sent: list[int] = []
        self.singles = 0

    def _send_single_request(self, request: httpx.Request) -> httpx.Response:
        self.singles += 1
        return super()._send_single_request(request)

    def send(self, request: httpx.Request, **kw: Any) -> httpx.Response:
        response = super().send(request, **kw)
        self.sent.append(response.status_code)
        return response


def test_subclassed_clients_and_transports_see_every_attempt(otel: Otel, server: FlakyUpstream) -> None:
    transport = CountingTransport()
    client = otel_hardening.harden(AuditedClient(transport=transport), retry=FAST_RETRY, budget=NO_BUDGET_LIMIT,
                                   tracer_provider=otel.tracer_provider)
    assert isinstance(client, AuditedClient) and client._transport is transport
    server.then(Reply(503))
    assert client.get(server.url).status_code == 200
    assert (transport.calls, client.singles, client.sent) == (2, 2, [200])
    client.close()


@pytest.mark.parametrize("retry", [True, False])
def test_respx_call_counts_change_only_by_documented_retries(mode: str, otel: Otel, retry: bool) -> None:
    with respx.mock(assert_all_called=False) as mock:
        route = mock.get("http://api.test/x").mock(side_effect=[httpx.Response(503), httpx.Response(200)])
        ok = mock.get("http://api.test/ok").mock(return_value=httpx.Response(200, text="fine"))
        h = hardened(mode, otel)
        if not retry:
            otel_hardening.harden(client_of(h), retry=RetryPolicy(max_attempts=1))
        assert h.get("http://api.test/ok").text == "fine"
        assert ok.call_count == 1
        assert h.get("http://api.test/x").status_code == (200 if retry else 503)
        assert route.call_count == (2 if retry else 1)
        h.close()

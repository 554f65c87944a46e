"""The caller's request is the caller's: a hardened send adds no extension, rewrites no timeout, and
sending the same request again (or to a MockTransport handler) shows exactly what the caller built."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from opentelemetry.instrumentation.httpx import AsyncOpenTelemetryTransport, SyncOpenTelemetryTransport

import otel_hardening
from otel_hardening import RetryPolicy
from otel_hardening.testing import FlakyUpstream, Reply
from tests.conftest import Otel
from tests.http.harness import NO_BUDGET_LIMIT

RETRY = RetryPolicy(max_attempts=3, backoff_initial=0.01, backoff_max=0.02, deadline=10.0)


def snapshot(request: httpx.Request) -> tuple[Any, ...]:
    """Everything a send could change, by value, and the extension objects by identity."""
    extensions = request.extensions
    return (request.method, str(request.url), list(request.headers.raw), request.content, sorted(extensions),
            {k: (dict(v) if isinstance(v, dict) else v) for k, v in extensions.items()},
            {k: id(v) for k, v in extensions.items()}, id(extensions), id(extensions.get("timeout")))


def user_trace(name: str, info: Any) -> None:
    pass


async def async_user_trace(name: str, info: Any) -> None:
    pass


def send_twice(mode: str, client: httpx.Client | httpx.AsyncClient, request: httpx.Request) -> list[int]:
    if mode == "async":
        async def run() -> list[int]:
            assert isinstance(client, httpx.AsyncClient)
            async with client:
                return [(await client.send(request)).status_code for _ in range(2)]
        return asyncio.run(run())
    assert isinstance(client, httpx.Client)
    with client:
        return [client.send(request).status_code for _ in range(2)]


@pytest.mark.parametrize("timeout", [None, 2.0, 60.0])
def test_a_hardened_send_leaves_the_request_as_built(mode: str, timeout: float | None, otel: Otel,
                                                     server: FlakyUpstream) -> None:
    # 2 s is shorter than the deadline, None and 60 s longer: each was rewritten once
    server.then(Reply(503), Reply(503))
    client_type = httpx.AsyncClient if mode == "async" else httpx.Client
    client = otel_hardening.harden(client_type(timeout=timeout), retry=RETRY, budget=NO_BUDGET_LIMIT,
                                   tracer_provider=otel.tracer_provider)
    request = client.build_request("GET", server.url, extensions={
        "trace": async_user_trace if mode == "async" else user_trace})
    before = snapshot(request)
    assert send_twice(mode, client, request) == [200, 200]
    assert server.hits == 4  # two attempts, then one, of the same request object
    assert snapshot(request) == before


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_mock_transport_handler_sees_the_request_as_built(mode: str, method: str, otel: Otel) -> None:
    seen: list[tuple[Any, ...]] = []
    statuses = iter([503, 200, 200])

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(snapshot(request))
        return httpx.Response(next(statuses))

    transport: httpx.MockTransport = httpx.MockTransport(handler)
    client_type = httpx.AsyncClient if mode == "async" else httpx.Client
    client = otel_hardening.harden(client_type(transport=transport, timeout=None), retry=RETRY,
                                   budget=NO_BUDGET_LIMIT, tracer_provider=otel.tracer_provider)
    body = {"content": b'{"amount": 1}', "headers": {"Idempotency-Key": "k1"}} if method == "POST" else {}
    request = client.build_request(method, "http://upstream.test/x", extensions={"custom": {"k": 1}},
                                   **body)  # type: ignore[arg-type]
    before = snapshot(request)
    assert send_twice(mode, client, request) == [200, 200]
    assert seen == [before] * 3


def test_the_users_trace_hook_is_called_and_left_in_place(mode: str, otel: Otel, server: FlakyUpstream) -> None:
    server.then(Reply(503))
    events: list[str] = []

    def hook(name: str, info: Any) -> None:
        events.append(name)

    async def ahook(name: str, info: Any) -> None:
        events.append(name)

    client_type = httpx.AsyncClient if mode == "async" else httpx.Client
    client = otel_hardening.harden(client_type(), retry=RETRY, budget=NO_BUDGET_LIMIT,
                                   tracer_provider=otel.tracer_provider)
    request = client.build_request("GET", server.url, extensions={"trace": ahook if mode == "async" else hook})
    send_twice(mode, client, request)
    # three attempts, each a full exchange on a connection (connect once, then reuse)
    assert events.count("http11.receive_response_headers.complete") == 3
    assert request.extensions["trace"] is (ahook if mode == "async" else hook)


def test_a_manual_opentelemetry_transport_gets_the_attempt_annotations(mode: str, otel: Otel,
                                                                      server: FlakyUpstream) -> None:
    """The app's own OTel transport around httpx's: the CLIENT span of a retry says so, the URL is redacted."""
    server.then(Reply(503))
    transport: httpx.BaseTransport | httpx.AsyncBaseTransport
    if mode == "async":
        transport = AsyncOpenTelemetryTransport(httpx.AsyncHTTPTransport(), tracer_provider=otel.tracer_provider)
        client: httpx.Client | httpx.AsyncClient = httpx.AsyncClient(transport=transport)
    else:
        transport = SyncOpenTelemetryTransport(httpx.HTTPTransport(), tracer_provider=otel.tracer_provider)
        client = httpx.Client(transport=transport)
    otel_hardening.harden(client, retry=RETRY, budget=NO_BUDGET_LIMIT,  # type: ignore[type-var]
                          tracer_provider=otel.tracer_provider)
    request = client.build_request("GET", server.url + "/p?access_token=SECRET1&page=2")
    assert send_twice(mode, client, request)[0] == 200
    attempts = [s for s in otel.finished() if s.kind.name == "CLIENT"]
    assert [(s.attributes or {}).get("http.request.resend_count") for s in attempts] == [None, 1, None]
    urls = [str(v) for s in attempts for k, v in (s.attributes or {}).items() if "url" in k]
    assert urls and all("page=2" in u and "SECRET1" not in u for u in urls), urls

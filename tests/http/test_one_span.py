"""One CLIENT span per attempt with install() active, also for a client that already carries an
OpenTelemetry transport (as its transport or in its mounts): the contrib httpx instrumentation's own
TestSyncIntegration::test_basic and its manual-transport cases, reproduced on a real loopback server."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.instrumentation.httpx import (
    AsyncOpenTelemetryTransport,
    HTTPXClientInstrumentor,
    SyncOpenTelemetryTransport,
)
from opentelemetry.sdk.trace import ReadableSpan

import otel_hardening
from otel_hardening import RetryPolicy
from otel_hardening.http.harden import is_hardened
from otel_hardening.testing import FlakyUpstream, Reply
from tests.conftest import Otel
from tests.http.test_install import CONFIG

RETRIES_OFF = replace(CONFIG, retry=RetryPolicy(max_attempts=1))


@pytest.fixture
def installed(otel: Otel) -> Iterator[Otel]:
    """install() with retries off, as in the issue: it turns the global httpx instrumentation on."""
    otel_hardening.install(RETRIES_OFF, tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider)
    assert HTTPXClientInstrumentor().is_instrumented_by_opentelemetry
    yield otel
    otel_hardening.uninstall()


def client_spans(otel: Otel) -> list[ReadableSpan]:
    return [s for s in otel.finished() if s.kind is trace.SpanKind.CLIENT]


def manual(mode: str, otel: Otel, where: str = "transport") -> httpx.Client | httpx.AsyncClient:
    """A client whose app wrapped httpx's transport in the OpenTelemetry one (transport= or mounts=)."""
    if mode == "async":
        atransport = AsyncOpenTelemetryTransport(httpx.AsyncHTTPTransport(), tracer_provider=otel.tracer_provider)
        if where == "mounts":
            return httpx.AsyncClient(mounts={"http://": atransport})
        return httpx.AsyncClient(transport=atransport)
    transport = SyncOpenTelemetryTransport(httpx.HTTPTransport(), tracer_provider=otel.tracer_provider)
    if where == "mounts":
        return httpx.Client(mounts={"http://": transport})
    return httpx.Client(transport=transport)


async def get(client: httpx.Client | httpx.AsyncClient, url: str) -> httpx.Response:
    if isinstance(client, httpx.AsyncClient):
        async with client:
            return await client.get(url)
    with client:
        return client.get(url)


@pytest.mark.parametrize("where", ["transport", "mounts"])
async def test_a_manual_opentelemetry_transport_gets_one_span_per_attempt(
        installed: Otel, server: FlakyUpstream, mode: str, where: str) -> None:
    """TestSyncIntegration / TestAsyncIntegration::test_basic: one span, GET, CLIENT, the request's attributes."""
    client = manual(mode, installed, where)
    assert is_hardened(client)
    response = await get(client, server.url + "/status/200")
    assert response.status_code == 200
    [span] = client_spans(installed)
    assert span.name == "GET" and span.status.status_code is trace.StatusCode.UNSET
    attributes = dict(span.attributes or {})
    assert attributes.get("http.method", attributes.get("http.request.method")) == "GET"
    assert attributes.get("http.status_code", attributes.get("http.response.status_code")) == 200
    assert span.instrumentation_scope is not None
    assert span.instrumentation_scope.name == "opentelemetry.instrumentation.httpx"


async def test_each_retry_of_a_manual_transport_is_one_span(otel: Otel, server: FlakyUpstream, mode: str) -> None:
    otel_hardening.install(CONFIG, tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider)
    try:
        server.then(Reply(503)).then(Reply(503))
        assert (await get(manual(mode, otel), server.url)).status_code == 200
    finally:
        otel_hardening.uninstall()
    spans = client_spans(otel)
    assert len(spans) == 3 == server.hits  # one per attempt, not two
    assert [(s.attributes or {}).get("http.request.resend_count") for s in spans] == [None, 1, 2]


async def test_a_plain_client_keeps_its_one_span_from_the_global_instrumentation(
        installed: Otel, server: FlakyUpstream, mode: str) -> None:
    client: httpx.Client | httpx.AsyncClient = httpx.AsyncClient() if mode == "async" else httpx.Client()
    assert (await get(client, server.url)).status_code == 200
    assert len(client_spans(installed)) == 1


async def test_instrumentation_turned_on_after_harden_adds_no_second_span(
        otel: Otel, server: FlakyUpstream, mode: str) -> None:
    client = otel_hardening.harden(manual(mode, otel), tracer_provider=otel.tracer_provider)  # type: ignore[type-var]
    HTTPXClientInstrumentor().instrument(tracer_provider=otel.tracer_provider)
    try:
        assert (await get(client, server.url)).status_code == 200
    finally:
        HTTPXClientInstrumentor().uninstrument()
    assert len(client_spans(otel)) == 1

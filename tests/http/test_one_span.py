"""One CLIENT span per attempt with install() active, also for a client that already carries an
OpenTelemetry transport (as its transport or in its mounts) or that the app instruments itself
(instrument_client), and the app's own instrument()/uninstrument() win over install()'s: the contrib
httpx instrumentation's own cases (test_contrib_suite.py runs them all), reproduced on a real loopback
server."""

from __future__ import annotations

import logging
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
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from wrapt import ObjectProxy

import otel_hardening
from otel_hardening import RetryPolicy
from otel_hardening._logging import forget
from otel_hardening.http import bypass, httpx_tracing
from otel_hardening.http.harden import is_hardened
from otel_hardening.testing import FlakyUpstream, Reply
from tests.conftest import Otel
from tests.http.test_install import CONFIG

RETRIES_OFF = replace(CONFIG, retry=RetryPolicy(max_attempts=1))
INSTRUMENT_CLIENT = vars(HTTPXClientInstrumentor).get("instrument_client")  # inherited since 0.66b0


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


@pytest.fixture
def app_tracing() -> Iterator[InMemorySpanExporter]:
    """The application's own tracer provider, for the httpx instrumentation it sets up itself."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    exporter.provider = provider  # type: ignore[attr-defined]
    yield exporter
    if HTTPXClientInstrumentor().is_instrumented_by_opentelemetry:
        HTTPXClientInstrumentor().uninstrument()
    provider.shutdown()


def nothing_of_ours_left() -> None:
    assert "instrument" not in vars(HTTPXClientInstrumentor)
    assert "uninstrument" not in vars(HTTPXClientInstrumentor)
    assert vars(HTTPXClientInstrumentor).get("instrument_client") is INSTRUMENT_CLIENT


async def test_the_apps_own_instrument_wins_over_installs(
        installed: Otel, app_tracing: InMemorySpanExporter, server: FlakyUpstream, mode: str) -> None:
    """install() turned the global instrumentation on; the app's instrument() with its provider and hook
    would be ignored ("already instrumented"): it replaces install()'s instead, and outlives uninstall()."""
    hooked: list[str] = []

    def request_hook(span: trace.Span, request: object) -> None:
        hooked.append("sync")

    async def async_request_hook(span: trace.Span, request: object) -> None:
        hooked.append("async")

    HTTPXClientInstrumentor().instrument(tracer_provider=app_tracing.provider,  # type: ignore[attr-defined]
                                         request_hook=request_hook, async_request_hook=async_request_hook)
    client: httpx.Client | httpx.AsyncClient = httpx.AsyncClient() if mode == "async" else httpx.Client()
    assert is_hardened(client)
    assert (await get(client, server.url)).status_code == 200
    assert hooked == [mode]
    [span] = app_tracing.get_finished_spans()
    assert span.kind is trace.SpanKind.CLIENT
    assert client_spans(installed) == []  # install()'s instrumentation is off, not tracing beside the app's
    assert installed.calls() == 1  # hardening itself stays on install()'s providers
    otel_hardening.uninstall()
    assert HTTPXClientInstrumentor().is_instrumented_by_opentelemetry  # the app's: uninstall() leaves it on
    nothing_of_ours_left()


@pytest.mark.parametrize("config", [RETRIES_OFF, CONFIG], ids=["retries_off", "retries_on"])
async def test_instrument_client_under_installs_instrumentation_is_one_span_per_attempt(
        otel: Otel, app_tracing: InMemorySpanExporter, server: FlakyUpstream, mode: str,
        config: otel_hardening.HardeningConfig) -> None:
    """contrib's test_basic: instrument_client() wraps the transport over the global wrapper, which then
    traces each attempt a second time; install()'s stays quiet under the app's per-client span."""
    otel_hardening.install(config, tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider)
    try:
        client: httpx.Client | httpx.AsyncClient = httpx.AsyncClient() if mode == "async" else httpx.Client()
        HTTPXClientInstrumentor.instrument_client(client, tracer_provider=app_tracing.provider)  # type: ignore[attr-defined]
        other: httpx.Client | httpx.AsyncClient = httpx.AsyncClient() if mode == "async" else httpx.Client()
        if config.retry.max_attempts > 1:
            server.then(Reply(503), Reply(503))
        assert (await get(client, server.url)).status_code == 200
        spans = app_tracing.get_finished_spans()
        assert len(spans) == server.hits == config.retry.max_attempts  # one per attempt, not two
        assert [(s.attributes or {}).get("http.request.resend_count") for s in spans] == [None, 1, 2][:len(spans)]
        assert client_spans(otel) == []
        assert (await get(other, server.url)).status_code == 200  # any other client: install()'s span
        assert len(client_spans(otel)) == 1
    finally:
        otel_hardening.uninstall()
    assert not HTTPXClientInstrumentor().is_instrumented_by_opentelemetry
    nothing_of_ours_left()


def test_the_apps_uninstrument_then_uninstall_warns_nothing_and_leaves_nothing_wrapped(
        installed: Otel, server: FlakyUpstream, caplog: pytest.LogCaptureFixture) -> None:
    HTTPXClientInstrumentor().uninstrument()
    otel_hardening.uninstall()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    nothing_of_ours_left()
    assert not isinstance(vars(httpx.HTTPTransport)["handle_request"], ObjectProxy)
    with httpx.Client() as client:
        assert client.get(server.url).status_code == 200
    assert client_spans(installed) == []


def test_a_failure_quieting_a_client_is_logged_once_and_the_apps_call_still_runs(
        installed: Otel, server: FlakyUpstream, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    def broken(client: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(httpx_tracing, "quiet_transports", broken)
    forget("httpx_tracing:instrument_client")
    before = bypass.counts()[bypass.INTERNAL_ERROR]
    clients = [httpx.Client(), httpx.Client()]
    for client in clients:
        HTTPXClientInstrumentor.instrument_client(client, tracer_provider=installed.tracer_provider)  # no exception
        assert client._is_instrumented_by_opentelemetry  # type: ignore[attr-defined]
    assert bypass.counts()[bypass.INTERNAL_ERROR] == before + 2
    assert len([r for r in caplog.records if "httpx_tracing" in r.getMessage() or "two CLIENT spans" in
                r.getMessage()]) == 1
    with clients[0] as client:
        assert client.get(server.url).status_code == 200
    assert len(client_spans(installed)) == 2  # contrib's behaviour without this layer: both wrappers trace
    clients[1].close()

"""Shared fixtures. The fault server, the in-memory telemetry and the circuit/budget reset between
tests come from the testing kit users get (otel_hardening.testing and its pytest plugin)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

from otel_hardening.testing import FlakyUpstream, HardeningTelemetry

Otel = HardeningTelemetry

pytest_plugins = ("pytester",)  # tests/testing runs users' test files against our pytest plugin


@pytest.fixture
def otel(hardening_telemetry: HardeningTelemetry) -> HardeningTelemetry:
    return hardening_telemetry


@pytest.fixture
def traced_httpx(otel: Otel) -> Iterator[Otel]:
    """opentelemetry-instrumentation-httpx on, with the test's providers: one CLIENT span per attempt."""
    instrumentor = HTTPXClientInstrumentor()
    instrumentor.instrument(tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider)
    yield otel
    instrumentor.uninstrument()


@pytest.fixture
def server(flaky_upstream: FlakyUpstream) -> FlakyUpstream:
    return flaky_upstream


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)

"""conftest.py of opentelemetry-instrumentation-httpx's own test suite when test_contrib_suite.py runs it:
``otel_hardening.install()`` active around every test, as an application would have it.

Retries are off (the suite counts one span per request), and health and resource tracking too (no
threads to start per test). The configuration is otherwise the environment's. This file is copied
next to the suite's tests (as tests/conftest.py), so it imports nothing from our tests package.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace

import httpx
import pytest
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from wrapt import ObjectProxy

import otel_hardening
from otel_hardening import HardeningConfig, RetryPolicy
from otel_hardening.health.config import HealthConfig
from otel_hardening.resources.config import ResourceConfig

PROMISE_CONTRADICTED = {
    "TestSyncIntegration::test_default_client":
        "asserts that a client without an OpenTelemetry transport makes no span",
    "TestAsyncIntegration::test_default_client":
        "asserts that a client without an OpenTelemetry transport makes no span",
    "TestSyncInstrumentationIntegration::test_can_instrument_subclassed_client":
        "asserts that a new client's transport is not wrapped before the test's instrument()",
    "TestAsyncInstrumentationIntegration::test_can_instrument_subclassed_async_client":
        "asserts that a new client's transport is not wrapped before the test's instrument()",
}
"""Cases that assume the global httpx instrumentation is off when the test starts: install() promises
the opposite (every attempt gets a CLIENT span), so they run with OTEL_PYTHON_HARDENING_INSTRUMENT_HTTPX=off,
the setting that keeps that promise out (docs/configuration.md)."""


def contradicts_install(nodeid: str) -> bool:
    return any(nodeid.endswith(case) for case in PROMISE_CONTRADICTED)


@pytest.fixture(autouse=True)
def _hardening_installed(request: pytest.FixtureRequest) -> Iterator[None]:
    env = dict(os.environ)
    instrumentation_off = contradicts_install(request.node.nodeid)
    if instrumentation_off:
        env["OTEL_PYTHON_HARDENING_INSTRUMENT_HTTPX"] = "off"
    config = replace(HardeningConfig.from_env(env), retry=RetryPolicy(max_attempts=1),
                     resources=ResourceConfig(enabled=False), health=HealthConfig(enabled=False))
    otel_hardening.install(config)
    # the case runs against install()'s instrumentation, not against one a case before it left on
    assert HTTPXClientInstrumentor().is_instrumented_by_opentelemetry is not instrumentation_off
    yield
    otel_hardening.uninstall()
    left = [name for name in ("instrument", "uninstrument", "instrument_client")
            if isinstance(vars(HTTPXClientInstrumentor).get(name), ObjectProxy)]
    assert not left, f"uninstall() left HTTPXClientInstrumentor.{left} wrapped"
    assert not isinstance(vars(httpx.HTTPTransport).get("handle_request"), ObjectProxy), \
        "the global httpx instrumentation is still on after the case and uninstall()"

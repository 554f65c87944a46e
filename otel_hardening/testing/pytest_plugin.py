"""pytest plugin (entry point ``pytest11``, name ``otel_hardening``): fixtures and state isolation.

- ``flaky_upstream``: a :class:`~otel_hardening.testing.FlakyUpstream` on a free loopback port.
- ``hardening_telemetry``: a :class:`~otel_hardening.testing.HardeningTelemetry` (in-memory spans,
  metrics and logs).
- Every test starts and ends with :func:`~otel_hardening.testing.reset`: a circuit opened by one test
  (a mocked outage, say) never rejects the next test's requests. Turn it off with
  ``otel_hardening_isolation = false`` in the pytest ini, or the whole plugin with ``-p no:otel_hardening``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from otel_hardening.testing import FlakyUpstream, HardeningTelemetry, reset

_ISOLATION = "otel_hardening_isolation"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(_ISOLATION, type="bool", default=True,
                  help="otel-hardening: reset circuit and retry-budget state around every test (default: true)")


@pytest.fixture(autouse=True)
def _otel_hardening_isolation(request: pytest.FixtureRequest) -> Iterator[None]:
    isolate = bool(request.config.getini(_ISOLATION))
    if isolate:
        reset()
    yield
    if isolate:
        reset()


@pytest.fixture
def flaky_upstream() -> Iterator[FlakyUpstream]:
    """A fault-injecting HTTP server on 127.0.0.1; script it with ``then``/``on``/``always``."""
    with FlakyUpstream() as upstream:
        yield upstream


@pytest.fixture
def hardening_telemetry() -> Iterator[HardeningTelemetry]:
    """In-memory tracer, meter and logger providers; harden clients with ``hardening_telemetry.harden(...)``."""
    telemetry = HardeningTelemetry()
    yield telemetry
    telemetry.shutdown()

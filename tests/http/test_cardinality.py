"""Bounded under high cardinality: upstream state, metric series and health components are capped.

Hundreds of distinct upstreams on one real loopback server: the client sends every request through
it as an HTTP proxy, so ``http://h17.test/`` is its own upstream (``h17.test:80``) to the layer.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

import otel_hardening
from otel_hardening import CircuitOpenError, CircuitPolicy, RetryPolicy
from otel_hardening.http import registry
from otel_hardening.http.registry import OVERFLOW, REGISTRY
from otel_hardening.testing import FlakyUpstream, Reply
from tests.conftest import Otel

CAP, SERIES = 40, 5


@pytest.fixture
def small_registry() -> Iterator[None]:
    saved = (REGISTRY.max_upstreams, REGISTRY.max_series)
    REGISTRY.configure(CAP, SERIES)
    yield
    REGISTRY.configure(*saved)


@pytest.fixture
def client(otel: Otel, server: FlakyUpstream, small_registry: None) -> Iterator[httpx.Client]:
    with otel_hardening.harden(
            httpx.Client(proxy=server.url, timeout=5), retry=RetryPolicy(max_attempts=1),
            circuit=CircuitPolicy(fail_max=2, reset_timeout=60),
            tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider) as c:
        yield c


def test_many_upstreams_keep_state_series_and_health_bounded(client: httpx.Client, otel: Otel,
                                                             server: FlakyUpstream) -> None:
    hosts = 300
    for i in range(hosts):
        assert client.get(f"http://h{i}.test/").status_code == 200
    assert server.hits == hosts
    assert len(REGISTRY) <= CAP

    for metric in ("hardening.http.client.calls", "hardening.http.client.attempts",
                   "hardening.retry.budget.available"):
        addresses = {a.get("server.address", a.get("hardening.circuit.name")) for a, _ in otel.points(metric)}
        assert len(addresses) <= SERIES + 1, (metric, addresses)
        assert OVERFLOW in addresses
    # nothing lost to eviction: the counters add up to every call made, and stay monotonic
    assert otel.total("hardening.http.client.calls") == hosts
    assert otel.total("hardening.http.client.calls", **{"server.address": OVERFLOW}) == hosts - SERIES
    states = otel.points("hardening.circuit.state")
    assert len(states) <= (SERIES + 1) * 3
    other_closed = [v for a, v in states if a["hardening.circuit.name"] == OVERFLOW
                    and a["hardening.circuit.state"] == "closed"]
    assert other_closed and 0 < other_closed[0] <= CAP  # how many circuits _other holds now

    health = registry.snapshot()
    assert len(health) <= SERIES + 1
    (other,) = [s for s in health if s.name == OVERFLOW]
    assert other.calls == hosts - SERIES

    for i in range(hosts):  # again: evicted upstreams come back fresh, counts keep adding up
        client.get(f"http://h{i}.test/")
    assert len(REGISTRY) <= CAP
    assert otel.total("hardening.http.client.calls") == 2 * hosts


def test_an_open_circuit_is_never_evicted(client: httpx.Client, server: FlakyUpstream) -> None:
    server.on("/down", Reply(503), Reply(503))
    for _ in range(2):
        assert client.get("http://down.test/down").status_code == 503
    for i in range(5 * CAP):
        client.get(f"http://h{i}.test/")
    with pytest.raises(CircuitOpenError):
        client.get("http://down.test/down")
    assert server.count("/down") == 2

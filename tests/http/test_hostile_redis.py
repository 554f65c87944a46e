"""Garbage circuit state in Redis is unknown state (logged once, local state), never an exception."""

from __future__ import annotations

import logging

import httpx
import pytest
import redis

import otel_hardening
from otel_hardening import CircuitPolicy, RetryPolicy
from otel_hardening.testing import FlakyUpstream, Reply
from tests.conftest import Otel
from tests.http.test_shared_state import redis_url  # noqa: F401  (the real redis-server fixture)

pytestmark = pytest.mark.redis


@pytest.mark.parametrize("key,garbage", [
    ("state", b"bogus"), ("state", b""), ("state", b"half-open\0"), ("state", "①".encode()),
    ("fail_counter", b"many"), ("opened_at", b"99999999999999999999"), ("opened_at", b"yesterday"),
])
def test_garbage_state_in_redis_never_reaches_the_application(
        redis_url: str, otel: Otel, server: FlakyUpstream,  # noqa: F811
        caplog: pytest.LogCaptureFixture, key: str, garbage: bytes) -> None:
    caplog.set_level(logging.WARNING)
    circuit = CircuitPolicy(fail_max=3, reset_timeout=30, storage=redis_url)
    client = otel_hardening.harden(httpx.Client(), retry=RetryPolicy(max_attempts=1), circuit=circuit,
                                   tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider)
    assert client.get(server.url).status_code == 200  # creates the keys
    store = redis.Redis.from_url(redis_url)
    (state_key,) = store.keys(b"*:state")
    store.set(state_key.replace(b":state", b":" + key.encode()), garbage)
    server.default = Reply(503)
    try:
        for _ in range(2):
            assert client.get(server.url).status_code == 503  # no KeyError / ValueError
    finally:
        client.close()
    garbage_logs = [r for r in caplog.records if "Redis" in r.getMessage() and "local" in r.getMessage()]
    if key == "state":
        assert len(garbage_logs) == 1  # once, not once per request

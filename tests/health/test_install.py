"""End to end through ``install()``: hardened clients drive the health the endpoint serves."""

from __future__ import annotations

import time

import httpx

import otel_hardening
from otel_hardening import health
from otel_hardening.config import CircuitPolicy, HardeningConfig, RetryPolicy
from otel_hardening.health import HealthConfig, Status
from otel_hardening.resources.config import ResourceConfig
from otel_hardening.testing import FlakyUpstream, Reply
from tests.conftest import Otel


def test_install_starts_health_and_uninstall_stops_it(server: FlakyUpstream, otel: Otel) -> None:
    config = HardeningConfig(
        retry=RetryPolicy(max_attempts=1), circuit=CircuitPolicy(fail_max=2, reset_timeout=60),
        resources=ResourceConfig(enabled=False), instrument_httpx=False,
        health=HealthConfig(endpoint=("127.0.0.1", 0), interval=0.05, recovery_hold=0, details="always"))
    otel_hardening.install(config, tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider)
    try:
        assert health._server is not None and health._monitor is not None
        base = f"http://127.0.0.1:{health._server.server_address[1]}"
        probe = httpx.Client(base_url=base)  # created after install(): hardened too, a separate upstream
        assert probe.get("/readyz").status_code == 200
        server.default = Reply(503)
        with httpx.Client(base_url=server.url) as client:  # hardened by install()
            client.get("/")
            client.get("/")
        deadline = time.monotonic() + 5
        while health.report().status is not Status.CRITICAL:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        r = probe.get("/readyz")
        assert r.status_code == 200  # an optional dependency is down: status critical, still ready
        doc = probe.get("/healthz").json()
        assert doc["status"] == "fail"
        assert doc["checks"][f"{server.url}:circuit"][0]["status"] == "fail"
        probe.close()
    finally:
        otel_hardening.uninstall()
    assert health._server is None and health._monitor is None

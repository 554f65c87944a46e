"""Circuit state shared through a real redis-server, and Redis outages that never reach the app."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import httpx
import pytest

import otel_hardening
from otel_hardening import CircuitOpenError, CircuitPolicy, RetryPolicy
from otel_hardening.testing import FlakyUpstream, Reply, closed_port
from tests.conftest import Otel

pytestmark = pytest.mark.redis


@pytest.fixture
def redis_url(tmp_path) -> Iterator[str]:  # type: ignore[no-untyped-def]
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server); shared-state tests skipped")
    port = closed_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import redis

    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(5)


OPENER = textwrap.dedent("""
    import sys, httpx, otel_hardening
    from otel_hardening import CircuitPolicy, RetryPolicy
    client = otel_hardening.harden(httpx.Client(), retry=RetryPolicy(max_attempts=1),
                                   circuit=CircuitPolicy(fail_max=3, reset_timeout=30, storage=sys.argv[1]))
    for _ in range(3):
        assert client.get(sys.argv[2]).status_code == 503
    print("opened")
""")


def test_circuit_opened_in_one_process_rejects_in_another(redis_url: str, otel: Otel,
                                                          server: FlakyUpstream) -> None:
    server.default = Reply(503)
    out = subprocess.run([sys.executable, "-c", OPENER, redis_url, server.url],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert server.hits == 3
    client = otel_hardening.harden(
        httpx.Client(), retry=RetryPolicy(max_attempts=1),
        circuit=CircuitPolicy(fail_max=3, reset_timeout=30, storage=redis_url),
        tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider)
    with pytest.raises(CircuitOpenError):
        client.get(server.url)
    assert server.hits == 3  # this process never sent a request: it saw the other's open circuit
    client.close()


def test_redis_down_never_reaches_the_application(otel: Otel, server: FlakyUpstream,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    dead = f"redis://127.0.0.1:{closed_port()}/0"
    caplog.set_level(logging.WARNING)
    client = otel_hardening.harden(
        httpx.Client(), retry=RetryPolicy(max_attempts=1),
        circuit=CircuitPolicy(fail_max=3, reset_timeout=30, storage=dead),
        tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider)
    server.default = Reply(200)
    for _ in range(5):
        assert client.get(server.url).status_code == 200
    server.default = Reply(503)
    for _ in range(3):
        assert client.get(server.url).status_code == 503
    with pytest.raises(CircuitOpenError):  # the local fallback state still protects the upstream
        client.get(server.url)
    client.close()
    redis_logs = [r for r in caplog.records if "Redis" in r.getMessage()]
    assert len(redis_logs) == 1  # logged once, not once per request


def test_redis_dying_mid_run_falls_back(redis_url: str, otel: Otel, server: FlakyUpstream) -> None:
    client = otel_hardening.harden(
        httpx.Client(), retry=RetryPolicy(max_attempts=1),
        circuit=CircuitPolicy(fail_max=2, reset_timeout=30, storage=redis_url),
        tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider)
    assert client.get(server.url).status_code == 200
    import redis

    redis.Redis.from_url(redis_url).shutdown(nosave=True)
    server.default = Reply(503)
    for _ in range(2):
        assert client.get(server.url).status_code == 503
    with pytest.raises(CircuitOpenError):
        client.get(server.url)
    client.close()

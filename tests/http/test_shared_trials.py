"""Half-open trials with circuit state shared through a real redis-server: one trial fleet-wide per
``half_open_max_calls``, a lease so that a crashed holder cannot wedge the circuit."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import httpx
import pytest

import otel_hardening
from otel_hardening import CircuitOpenError, CircuitPolicy, RetryPolicy
from otel_hardening.testing import FlakyUpstream, Reply
from tests.conftest import Otel
from tests.http.test_shared_state import redis_url  # noqa: F401  (the real redis-server fixture)

pytestmark = pytest.mark.redis

RESET = 2.0

WORKER = textwrap.dedent("""
    import sys, httpx, otel_hardening
    from otel_hardening import CircuitOpenError, CircuitPolicy, RetryPolicy
    storage, url, reset = sys.argv[1], sys.argv[2], float(sys.argv[3])
    client = otel_hardening.harden(httpx.Client(timeout=30), retry=RetryPolicy(max_attempts=1),
                                   circuit=CircuitPolicy(fail_max=1, reset_timeout=reset, storage=storage))
    print("ready", flush=True)
    sys.stdin.readline()
    try:
        print(client.get(url).status_code, flush=True)
    except CircuitOpenError:
        print("rejected", flush=True)
""")


def workers(count: int, redis: str, url: str) -> list[subprocess.Popen[str]]:
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, redis, url, str(RESET)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(count)]
    for proc in procs:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read() if proc.stderr else ""
    return procs


def go(procs: list[subprocess.Popen[str]]) -> None:
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()


def open_shared_circuit(redis: str, server: FlakyUpstream, otel: Otel) -> httpx.Client:
    client = otel_hardening.harden(
        httpx.Client(timeout=30), retry=RetryPolicy(max_attempts=1),
        circuit=CircuitPolicy(fail_max=1, reset_timeout=RESET, storage=redis),
        tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider)
    server.on("/open", Reply(503))
    assert client.get(server.url + "/open").status_code == 503
    time.sleep(RESET + 0.1)  # (Redis keeps opened_at in whole seconds: it may be half-open a little earlier)
    return client


def test_four_processes_send_one_trial_at_a_recovering_upstream(redis_url: str, otel: Otel,  # noqa: F811
                                                                 server: FlakyUpstream) -> None:
    server.default = Reply(200, delay=1.5)  # recovering, slowly: every worker asks while the trial runs
    procs = workers(4, redis_url, server.url + "/trial")
    try:
        client = open_shared_circuit(redis_url, server, otel)
        go(procs)
        answers = sorted(proc.communicate(timeout=60)[0].strip() for proc in procs)
    finally:
        for proc in procs:
            proc.kill()
    assert answers == ["200", "rejected", "rejected", "rejected"], answers
    assert server.by_path["/trial"] == 1
    assert client.get(server.url + "/after").status_code == 200  # the trial closed it, fleet-wide
    client.close()


def test_a_crashed_trial_holder_delays_the_next_trial_by_one_lease(redis_url: str, otel: Otel,  # noqa: F811
                                                                   server: FlakyUpstream) -> None:
    server.on("/hang", Reply(200, delay=30))
    (holder,) = workers(1, redis_url, server.url + "/hang")
    try:
        client = open_shared_circuit(redis_url, server, otel)
        go([holder])
        while server.by_path["/hang"] < 1:
            time.sleep(0.01)
        holder.kill()  # SIGKILL: the slot is never given back
        holder.wait(10)
        crashed = time.monotonic()
    finally:
        holder.kill()
    with pytest.raises(CircuitOpenError):  # its slot is still leased
        client.get(server.url + "/next")
    while True:
        try:
            response = client.get(server.url + "/next")
            break
        except CircuitOpenError:
            assert time.monotonic() - crashed < RESET + 3, "the crashed holder's slot was never freed"
            time.sleep(0.05)
    assert response.status_code == 200
    assert server.by_path["/next"] == 1
    client.close()


async def test_a_cancelled_stale_trial_cannot_open_a_second_fleet_wide_slot(redis_url: str, otel: Otel,  # noqa: F811
                                                                          server: FlakyUpstream) -> None:
    from tests.http.test_circuit import stale_trial_sequence

    await stale_trial_sequence(otel, server, redis_url, reset=RESET)

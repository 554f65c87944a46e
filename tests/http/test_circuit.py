"""Circuit breakers on a real faulty upstream: open, reject without I/O, half-open trial, close."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

import otel_hardening
from otel_hardening import CircuitOpenError, CircuitPolicy, RetryPolicy
from otel_hardening.testing import FlakyUpstream, Reply
from tests.conftest import Otel
from tests.http.harness import Harness

NO_RETRY = RetryPolicy(max_attempts=1)


@pytest.fixture
def h(mode: str, otel: Otel) -> Iterator[Harness]:
    harness = Harness(mode, otel, retry=NO_RETRY, circuit=CircuitPolicy(fail_max=3, reset_timeout=0.5))
    yield harness
    harness.close()


def state_points(otel: Otel) -> dict[str, int]:
    return {a["hardening.circuit.state"]: v for a, v in otel.points("hardening.circuit.state")}


def test_breaker_opens_rejects_without_io_then_recovers(h: Harness, server: FlakyUpstream, otel: Otel) -> None:
    server.default = Reply(503)
    for _ in range(3):
        assert h.get(server.url).status_code == 503
    assert state_points(otel) == {"closed": 0, "open": 1, "half_open": 0}

    for _ in range(20):
        with pytest.raises(CircuitOpenError) as info:
            h.get(server.url)
        assert isinstance(info.value, httpx.TransportError)
        assert info.value.upstream == server.url
        assert 0 < info.value.retry_in <= 0.5
    assert server.hits == 3  # the 20 rejected requests never reached the server
    assert otel.total("hardening.http.client.calls", **{"hardening.outcome": "rejected_circuit_open"}) == 20

    time.sleep(0.6)
    server.default = Reply(200)
    assert h.get(server.url).status_code == 200  # the half-open trial
    assert server.hits == 4
    assert state_points(otel) == {"closed": 1, "open": 0, "half_open": 0}
    transitions = {a["hardening.circuit.state"]: v for a, v in otel.points("hardening.circuit.transitions")}
    assert transitions == {"open": 1, "half_open": 1, "closed": 1}


def test_rejections_past_the_first_each_second_are_events_on_the_callers_span(
        h: Harness, server: FlakyUpstream, otel: Otel) -> None:
    server.default = Reply(503)
    for _ in range(3):
        h.get(server.url)
    with otel.tracer_provider.get_tracer("app").start_as_current_span("caller"):
        for _ in range(20):
            with pytest.raises(CircuitOpenError) as info:
                h.get(server.url)
            assert info.value.upstream == server.url and 0 < info.value.retry_in <= 0.5
    assert server.hits == 3
    assert otel.total("hardening.http.client.calls", **{"hardening.outcome": "rejected_circuit_open"}) == 20
    (traced,) = otel.requests_with_outcome("rejected_circuit_open")  # the first after the circuit opened
    assert traced.attributes["hardening.attempts"] == 0
    (caller,) = otel.finished("caller")
    rejected = [e for e in caller.events if e.name == "hardening.circuit.rejected"]
    assert len(rejected) == 19 and all(dict(e.attributes or {}) == {"hardening.circuit.name": server.url}
                                       for e in rejected)
    # a rejection made no attempt: it is no sample of attempts per call hardening acted on (the one
    # sample is the call whose failure opened the circuit)
    (samples,) = [p for _, p in otel.points("hardening.http.client.retried.attempts")]
    assert (samples.count, samples.min) == (1, 1)
    time.sleep(0.6)
    assert h.get(server.url).status_code == 503  # the trial fails: the circuit opens again
    with pytest.raises(CircuitOpenError):
        h.get(server.url)
    assert len(otel.requests_with_outcome("rejected_circuit_open")) == 2  # traced again after each opening


def test_failed_trial_reopens(h: Harness, server: FlakyUpstream, otel: Otel) -> None:
    server.default = Reply(502)
    for _ in range(3):
        h.get(server.url)
    time.sleep(0.6)
    assert h.get(server.url).status_code == 502  # trial fails
    with pytest.raises(CircuitOpenError):
        h.get(server.url)
    assert server.hits == 4
    (rejected, *_) = [s for s in otel.finished("hardening.request")
                      if s.attributes["hardening.outcome"] == "rejected_circuit_open"]
    assert rejected.attributes["hardening.circuit.state"] == "open"


def test_other_4xx_never_open_the_circuit(h: Harness, server: FlakyUpstream) -> None:
    server.default = Reply(404)
    for _ in range(10):
        assert h.get(server.url).status_code == 404
    server.default = Reply(429)
    for _ in range(3):
        h.get(server.url)
    with pytest.raises(CircuitOpenError):  # 429 counts: the upstream asks for less load
        h.get(server.url)


def test_state_change_is_a_span_event(mode: str, otel: Otel, server: FlakyUpstream) -> None:
    harness = Harness(mode, otel, retry=RetryPolicy(max_attempts=3, backoff_initial=0.01),
                      circuit=CircuitPolicy(fail_max=2, reset_timeout=30))
    server.default = Reply(503)
    try:
        # the circuit opens after attempt 2: no attempt 3, and the caller gets the real 503
        assert harness.get(server.url).status_code == 503
    finally:
        harness.close()
    (logical,) = otel.finished("hardening.request")
    changes = [e for e in logical.events if e.name == "hardening.circuit.state_change"]
    assert [(e.attributes["hardening.circuit.previous_state"], e.attributes["hardening.circuit.state"])
            for e in changes] == [("closed", "open")]
    denied = [e for e in logical.events if e.name == "hardening.retry.denied"]
    assert denied[0].attributes["hardening.retry.denied"] == "circuit_open"
    assert logical.attributes["hardening.outcome"] == "failure_after_retry"
    assert server.hits == 2


def test_half_open_lets_a_limited_number_of_trials_through(otel: Otel, server: FlakyUpstream) -> None:
    client = otel_hardening.harden(
        httpx.Client(), retry=NO_RETRY, circuit=CircuitPolicy(fail_max=1, reset_timeout=0.2),
        tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider)
    server.then(Reply(503))
    client.get(server.url)
    time.sleep(0.3)
    server.default = Reply(200, delay=0.5)
    results: list[object] = []

    def call() -> None:
        try:
            results.append(client.get(server.url).status_code)
        except CircuitOpenError as exc:
            results.append(exc)

    threads = [threading.Thread(target=call) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    client.close()
    assert results.count(200) == 1
    assert sum(isinstance(r, CircuitOpenError) for r in results) == 4
    assert server.hits == 2


def test_async_failures_open_the_breaker(otel: Otel, server: FlakyUpstream) -> None:
    """pybreaker's own async path needs tornado and never counts awaited failures; ours does."""
    server.default = Reply(503)

    async def main() -> None:
        async with otel_hardening.harden(
            httpx.AsyncClient(), retry=NO_RETRY, circuit=CircuitPolicy(fail_max=3),
            tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider,
        ) as client:
            await asyncio.gather(*(client.get(server.url) for _ in range(3)))
            with pytest.raises(CircuitOpenError):
                await client.get(server.url)

    asyncio.run(main())
    assert server.hits == 3


def test_sixteen_threads_through_one_breaker_run_in_parallel(otel: Otel, server: FlakyUpstream) -> None:
    """pybreaker's call() holds one lock for the whole call; ours must not serialize requests."""
    server.default = Reply(200, delay=0.5)
    client = otel_hardening.harden(
        httpx.Client(limits=httpx.Limits(max_connections=32)),
        tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider)
    barrier = threading.Barrier(16)

    def call() -> None:
        barrier.wait()
        client.get(server.url)

    threads = [threading.Thread(target=call) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    client.close()
    assert server.hits == 16
    assert server.max_in_flight >= 12  # serialized, it would be 1


def test_a_late_release_cannot_free_a_newer_half_open_periods_slot() -> None:
    """The issue's sequence, driven as the engine drives the circuit (acquire, verdict, release)."""
    from otel_hardening.http.circuit import HALF_OPEN, OPEN, Circuit

    circuit = Circuit("upstream", CircuitPolicy(fail_max=1, reset_timeout=0.05, half_open_max_calls=1))
    seen: list[tuple[str, str]] = []
    stale = circuit.acquire(seen)  # a slow request, started while closed
    opener = circuit.acquire(seen)
    assert stale is not None and opener is not None
    circuit.record_failure(opener, "503", seen)
    assert circuit.state == OPEN
    time.sleep(0.08)
    trial_1 = circuit.acquire(seen)
    assert trial_1 is not None and trial_1.trial and circuit.state == HALF_OPEN
    circuit.record_failure(stale, "503", seen)  # the stale failure reopens
    assert circuit.state == OPEN
    time.sleep(0.08)
    trial_2 = circuit.acquire(seen)
    assert trial_2 is not None and trial_2.trial and circuit.state == HALF_OPEN
    circuit.release(trial_1)  # its task was cancelled: late, and from the earlier period
    assert circuit.acquire(seen) is None  # trial 2 still holds the only slot
    circuit.release(trial_1)  # released twice: still nothing
    assert circuit.acquire(seen) is None
    circuit.release(trial_2)
    trial_3 = circuit.acquire(seen)
    assert trial_3 is not None and trial_3.trial
    assert seen == [("closed", "open"), ("open", "half_open"), ("half_open", "open"), ("open", "half_open")]


async def test_a_cancelled_stale_trial_cannot_open_a_second_slot(otel: Otel, server: FlakyUpstream) -> None:
    await stale_trial_sequence(otel, server, "memory")


async def stale_trial_sequence(otel: Otel, server: FlakyUpstream, storage: str, reset: float = 0.3) -> None:
    """The same sequence end to end: real requests, a trial task cancelled after the circuit half-opened again."""
    from otel_hardening.http.registry import REGISTRY

    client = otel_hardening.harden(
        httpx.AsyncClient(timeout=10), retry=NO_RETRY,
        circuit=CircuitPolicy(fail_max=1, reset_timeout=reset, half_open_max_calls=1, storage=storage),
        tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider)
    server.on("/stale", Reply(503, delay=1.0 + reset))
    server.on("/open", Reply(503))
    server.default = Reply(200, delay=5.0)  # trials hang until cancelled

    async def wait_for(state: str) -> None:
        for _ in range(200):
            upstreams = REGISTRY.all()
            if upstreams and upstreams[0].circuit.state == state:
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"circuit never {state}")

    async with client:
        stale = asyncio.create_task(client.get(server.url + "/stale"))
        while server.in_flight < 1:
            await asyncio.sleep(0.01)
        assert (await client.get(server.url + "/open")).status_code == 503
        await asyncio.sleep(reset + 0.05)
        trial_1 = asyncio.create_task(client.get(server.url + "/trial1"))
        await wait_for("half_open")
        assert (await stale).status_code == 503  # the stale failure reopens
        await wait_for("open")
        await asyncio.sleep(reset + 0.05)
        trial_2 = asyncio.create_task(client.get(server.url + "/trial2"))
        await wait_for("half_open")
        while server.by_path["/trial2"] < 1:
            await asyncio.sleep(0.01)
        trial_1.cancel()
        with pytest.raises(asyncio.CancelledError):
            await trial_1
        with pytest.raises(CircuitOpenError):
            await client.get(server.url + "/third")
        trial_2.cancel()
        with pytest.raises(asyncio.CancelledError):
            await trial_2
    assert server.by_path["/third"] == 0

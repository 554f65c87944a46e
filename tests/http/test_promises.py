"""What the README promises, kept: last real answer when the circuit opens mid-retry, spans end on
cancellation, harden() overrides install(), redaction on every attempt span."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Iterator
from types import FrameType

import httpx
import pytest

import otel_hardening
from otel_hardening import CircuitPolicy, HardeningConfig, RetryPolicy
from otel_hardening.config import BudgetPolicy
from otel_hardening.health.config import HealthConfig
from otel_hardening.resources.config import ResourceConfig
from otel_hardening.testing import FlakyUpstream, Reply
from tests.conftest import Otel
from tests.http.harness import NO_BUDGET_LIMIT, Harness
from tests.http.test_hostile import checked_out


def test_circuit_opening_during_the_wait_returns_the_last_real_response(otel: Otel,
                                                                        server: FlakyUpstream) -> None:
    retry = RetryPolicy(max_attempts=3, backoff_initial=0.01, retry_after_max=5)
    client = otel_hardening.harden(httpx.Client(timeout=5), retry=retry, budget=NO_BUDGET_LIMIT,
                                   circuit=CircuitPolicy(fail_max=2, reset_timeout=30),
                                   tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider)
    server.on("/a", Reply(503, body=b"real answer", retry_after=1))
    server.on("/b", Reply(503))
    results: list[httpx.Response | BaseException] = []

    def first() -> None:
        try:
            results.append(client.get(server.url + "/a"))
        except BaseException as exc:
            results.append(exc)

    waiting = threading.Thread(target=first)
    waiting.start()
    time.sleep(0.3)  # /a waits 1 s to retry; meanwhile /b's failure opens the circuit
    assert client.get(server.url + "/b", extensions={"hardening": {"retry": False}}).status_code == 503
    waiting.join(5)
    (result,) = results
    assert isinstance(result, httpx.Response), result
    assert (result.status_code, result.text) == (503, "real answer")
    assert server.count("/a") == 1
    (logical,) = [s for s in otel.finished("hardening.request") if s.attributes["hardening.attempts"] == 1
                  and s.attributes["hardening.outcome"] == "failure_after_retry"]
    assert [e.attributes.get("hardening.retry.reason") for e in logical.events
            if e.name == "hardening.retry.denied"] == ["circuit_open"]
    assert checked_out(client) == 0
    client.close()


def test_cancelled_task_during_backoff_ends_the_span_and_closes_the_response(otel: Otel,
                                                                             server: FlakyUpstream) -> None:
    server.then(Reply(503, retry_after=5))

    async def run() -> int:
        async with otel_hardening.harden(httpx.AsyncClient(), budget=NO_BUDGET_LIMIT,
                                         tracer_provider=otel.tracer_provider) as client:
            task = asyncio.create_task(client.get(server.url))
            await asyncio.sleep(0.5)
            assert not task.done()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return checked_out(client)

    assert asyncio.run(run()) == 0
    (logical,) = otel.finished("hardening.request")
    assert logical.end_time is not None
    assert logical.attributes["hardening.attempts"] == 1


def test_keyboard_interrupt_during_backoff_ends_the_span_and_closes_the_response(
        otel: Otel, server: FlakyUpstream) -> None:
    server.then(Reply(503, retry_after=5))

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    client = otel_hardening.harden(httpx.Client(), budget=NO_BUDGET_LIMIT, tracer_provider=otel.tracer_provider)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.5)
        with pytest.raises(KeyboardInterrupt):
            client.get(server.url)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert checked_out(client) == 0
    client.close()
    (logical,) = otel.finished("hardening.request")
    assert logical.attributes["hardening.attempts"] == 1


@pytest.fixture
def installed(otel: Otel) -> Iterator[Otel]:
    config = HardeningConfig(retry=RetryPolicy(max_attempts=3, backoff_initial=0.01),
                             budget=BudgetPolicy(min_per_second=100), resources=ResourceConfig(enabled=False),
                             health=HealthConfig(enabled=False), instrument_httpx=False)
    otel_hardening.install(config, tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider)
    yield otel
    otel_hardening.uninstall()


def test_harden_after_install_applies_its_override(installed: Otel, server: FlakyUpstream) -> None:
    server.default = Reply(503)
    with httpx.Client() as client:
        otel_hardening.harden(client, retry=RetryPolicy(max_attempts=1))
        assert client.get(server.url).status_code == 503
    assert server.hits == 1


SECRET_URL = "/p?access_token=SECRET1&%74oken=SECRET2&page=2#id_token=SECRET3"


def test_attempt_failing_before_any_io_has_its_url_redacted(mode: str, traced_httpx: Otel,
                                                            server: FlakyUpstream) -> None:
    # one connection, held by an open stream: the next request times out waiting for the pool,
    # before httpcore calls any trace hook
    harness = Harness(mode, traced_httpx, timeout=5.0)
    client = harness.aclient if mode == "async" else harness.client
    client._transport._pool._max_connections = 1  # type: ignore[attr-defined]
    server.default = Reply(200, body=b"x" * (2 << 20))  # more than the old 1 MiB read-ahead
    try:
        if mode == "async":
            async def hold_and_ask() -> None:
                async with client.stream("GET", server.url) as _:  # type: ignore[union-attr]
                    await client.get(server.url + SECRET_URL,  # type: ignore[union-attr]
                                     timeout=httpx.Timeout(5, pool=0.2))
            with pytest.raises(httpx.PoolTimeout):
                harness.loop.run_until_complete(hold_and_ask())
        else:
            with client.stream("GET", server.url), pytest.raises(httpx.PoolTimeout):  # type: ignore[union-attr]
                client.get(server.url + SECRET_URL, timeout=httpx.Timeout(5, pool=0.2))  # type: ignore[union-attr]
    finally:
        harness.close()
    urls = [str(v) for s in traced_httpx.finished() for k, v in (s.attributes or {}).items() if "url" in k]
    assert len(urls) >= 2 and any("page=2" in u for u in urls)
    for secret in ("SECRET1", "SECRET2", "SECRET3"):
        assert not any(secret in u for u in urls), urls

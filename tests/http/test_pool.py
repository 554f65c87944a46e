"""Connection-pool metrics against a real loopback upstream that holds its connections until released.

Two connections (``max_connections=2``) held by the upstream, two more requests queued behind them:
the metrics show active = max, waiting > 0, a time in queue as long as the hold, then a request
whose pool wait runs out ends as ``pool_timeout`` while the caller gets httpx's own PoolTimeout.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from otel_hardening import CircuitPolicy
from otel_hardening.http import pools
from otel_hardening.http.registry import REGISTRY
from otel_hardening.testing import FlakyUpstream, ReceivedRequest, Reply
from tests.conftest import Otel

LIMITS = httpx.Limits(max_connections=2, max_keepalive_connections=1)
ONE_FAILURE_OPENS = CircuitPolicy(fail_max=1)


class Gate:
    """Holds every request at the upstream until ``release()``; counts the held ones."""

    def __init__(self, upstream: FlakyUpstream) -> None:
        self.open = threading.Event()
        self.held = 0
        self._lock = threading.Lock()
        upstream.rule = self.rule

    def rule(self, request: ReceivedRequest) -> Reply:
        with self._lock:
            self.held += 1
        self.open.wait(10)
        return Reply(200)

    def release(self) -> None:
        self.open.set()


@pytest.fixture
def gate(server: FlakyUpstream) -> Iterator[Gate]:
    g = Gate(server)
    yield g
    g.release()


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def upstream_attrs(server: FlakyUpstream) -> dict[str, Any]:
    return {"server.address": "127.0.0.1", "server.port": server.port}


def connections(otel: Otel, state: str) -> float:
    return otel.total("http.client.open_connections", **{"http.connection.state": state})


def queue_histogram(otel: Otel) -> Any:
    [(attrs, point)] = otel.points("http.client.request.time_in_queue")
    return attrs, point


class Runner:
    """Starts requests in the background, in threads (sync) or tasks on one loop thread (async)."""

    def __init__(self, mode: str, otel: Otel) -> None:
        self.mode = mode
        self.results: list[object] = []
        self.threads: list[threading.Thread] = []
        if mode == "async":
            self.loop = asyncio.new_event_loop()
            self.loop_thread = threading.Thread(target=self.loop.run_forever, daemon=True)
            self.loop_thread.start()
            self.aclient = otel.harden(httpx.AsyncClient(limits=LIMITS), circuit=ONE_FAILURE_OPENS)
        else:
            self.client = otel.harden(httpx.Client(limits=LIMITS), circuit=ONE_FAILURE_OPENS)
        self.closed = False

    def get(self, url: str, **kw: Any) -> httpx.Response:
        if self.mode == "async":
            return asyncio.run_coroutine_threadsafe(self.aclient.get(url, **kw), self.loop).result(15)  # type: ignore[no-any-return]
        return self.client.get(url, **kw)

    def start(self, url: str, n: int, **kw: Any) -> None:
        def one() -> None:
            try:
                self.results.append(self.get(url, **kw))
            except Exception as exc:
                self.results.append(exc)
        for _ in range(n):
            thread = threading.Thread(target=one, daemon=True)
            thread.start()
            self.threads.append(thread)

    def join(self) -> None:
        for thread in self.threads:
            thread.join(15)
        self.threads = []

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.mode == "async":
            asyncio.run_coroutine_threadsafe(self.aclient.aclose(), self.loop).result(10)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.loop_thread.join(5)
            self.loop.close()
        else:
            self.client.close()


@pytest.fixture
def runner(mode: str, otel: Otel) -> Iterator[Runner]:
    r = Runner(mode, otel)
    yield r
    r.join()
    r.close()


def test_a_saturated_pool_shows_active_max_waiting_and_time_in_queue(
        server: FlakyUpstream, gate: Gate, runner: Runner, otel: Otel) -> None:
    runner.start(server.url, 2)
    wait_for(lambda: gate.held == 2, "two requests held by the upstream")
    runner.start(server.url, 2)  # they find the pool full
    wait_for(lambda: otel.total("hardening.http.client.pool.waiting") == 2, "two requests waiting")

    base = upstream_attrs(server)
    assert connections(otel, "active") == 2 and connections(otel, "idle") == 0
    assert otel.total("hardening.http.client.pool.limit", **base, **{"hardening.pool.limit": "max_connections"}) == 2
    assert otel.total("hardening.http.client.pool.limit",
                      **{"hardening.pool.limit": "max_keepalive_connections"}) == 1
    [(attrs, _)] = [p for p in otel.points("http.client.open_connections")]
    assert attrs == {**base, "url.scheme": "http", "http.connection.state": "active"}
    assert not otel.points("http.client.request.time_in_queue")  # nobody got a connection after waiting yet

    time.sleep(0.3)
    gate.release()
    runner.join()
    assert [getattr(r, "status_code", r) for r in runner.results] == [200] * 4
    attrs, point = queue_histogram(otel)
    assert attrs == {**base, "url.scheme": "http"}
    assert point.count == 2  # only the two that arrived at a full pool: the first two did not wait
    assert point.min >= 0.25, "the queued requests waited for the held ones"
    assert otel.total("hardening.http.client.pool.waiting") == 0
    assert connections(otel, "active") == 0 and connections(otel, "idle") == 1  # max_keepalive_connections=1
    assert otel.calls("success") == 4


def test_a_pool_wait_that_runs_out_is_the_pool_timeout_outcome(
        server: FlakyUpstream, gate: Gate, runner: Runner, otel: Otel) -> None:
    runner.start(server.url, 2)
    wait_for(lambda: gate.held == 2, "two requests held by the upstream")
    started = time.monotonic()
    with pytest.raises(httpx.PoolTimeout):
        runner.get(server.url, timeout=httpx.Timeout(5.0, pool=0.3))
    assert time.monotonic() - started >= 0.3
    assert otel.calls("pool_timeout") == 1
    [circuit] = [u.circuit for u in REGISTRY.all()]
    assert circuit.state == "closed", "a PoolTimeout is local saturation, not the upstream's failure"
    _, point = queue_histogram(otel)
    assert point.count == 1 and point.min >= 0.29  # the whole wait, though it never got a connection
    assert server.hits == 2, "not retried: nothing reached the upstream"
    gate.release()
    runner.join()
    assert otel.calls("success") == 2


def test_connection_duration_on_close_and_no_pool_series_after_the_client_closes(
        server: FlakyUpstream, runner: Runner, otel: Otel) -> None:
    runner.get(server.url)
    runner.get(server.url)  # the same keep-alive connection
    assert connections(otel, "idle") == 1
    assert not otel.points("http.client.connection.duration"), "recorded on close, not per request"
    time.sleep(0.2)
    runner.close()
    [(attrs, point)] = otel.points("http.client.connection.duration")
    assert attrs == {**upstream_attrs(server), "url.scheme": "http"}
    assert point.count == 1 and point.min >= 0.2
    for metric in ("http.client.open_connections", "hardening.http.client.pool.waiting",
                   "hardening.http.client.pool.limit"):
        assert not otel.points(metric), f"{metric} still reported for a closed client"


def test_a_dropped_client_is_forgotten(server: FlakyUpstream, otel: Otel) -> None:
    client = otel.harden(httpx.Client())
    client.get(server.url)
    assert connections(otel, "idle") == 1
    dropped = weakref.ref(client)
    assert client in pools._clients
    del client
    gc.collect()
    assert dropped() is None, "the pool registry keeps no client alive"
    assert not otel.points("http.client.open_connections")


def test_an_upstream_past_the_series_limit_is_other(server: FlakyUpstream, otel: Otel) -> None:
    saved = REGISTRY.max_series
    REGISTRY.max_series = 0
    try:
        with otel.harden(httpx.Client()) as client:
            client.get(server.url)
            [(attrs, n)] = otel.points("http.client.open_connections")
            assert attrs["server.address"] == "_other" and attrs["server.port"] == 0 and n == 1
    finally:
        REGISTRY.max_series = saved

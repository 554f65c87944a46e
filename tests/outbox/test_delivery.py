"""Deferral and replay end to end: a hardened client, a real store, a real upstream that counts
Idempotency-Keys. Down, then up: every deferred write is applied once, in order, soon after recovery."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import otel_hardening
from otel_hardening import CircuitPolicy, RetryPolicy
from otel_hardening.http.transitions import add_transition_listener
from otel_hardening.outbox import Outbox, OutboxPolicy, OutboxRefused, RequestDeferred
from otel_hardening.testing import HardeningTelemetry, Reply
from otel_hardening.testing._upstream import ReceivedRequest
from tests.outbox.conftest import Ledger

FAST = OutboxPolicy(strip_headers=frozenset(), backoff_initial=0.1, backoff_max=0.5, poll=0.5)
RETRY = RetryPolicy(max_attempts=2, backoff_initial=0.01, backoff_max=0.02)
CIRCUIT = CircuitPolicy(fail_max=3, reset_timeout=1.0)


def wait_for(check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout}s")
        time.sleep(0.02)


class App:
    """A hardened client with an outbox, sync or async."""

    def __init__(self, mode: str, outbox: Outbox, otel: HardeningTelemetry, circuit: CircuitPolicy = CIRCUIT) -> None:
        self.mode, self.outbox = mode, outbox
        kw: dict[str, Any] = dict(retry=RETRY, circuit=circuit, outbox=outbox, tracer_provider=otel.tracer_provider,
                                  meter_provider=otel.meter_provider)
        if mode == "async":
            self.loop = asyncio.new_event_loop()
            self.aclient = otel_hardening.harden(httpx.AsyncClient(timeout=5), **kw)
        else:
            self.client = otel_hardening.harden(httpx.Client(timeout=5), **kw)

    def request(self, method: str, url: str, **kw: object) -> httpx.Response:
        if self.mode == "async":
            return self.loop.run_until_complete(self.aclient.request(method, url, **kw))  # type: ignore[arg-type]
        return self.client.request(method, url, **kw)  # type: ignore[arg-type]

    def close(self) -> None:
        self.outbox.close()
        if self.mode == "async":
            self.loop.run_until_complete(self.aclient.aclose())
            self.loop.close()
        else:
            self.client.close()


@pytest.fixture
def app_factory(mode: str, otel: HardeningTelemetry) -> Iterator[Callable[..., App]]:
    made: list[App] = []

    def make(store: str, policy: OutboxPolicy = FAST, circuit: CircuitPolicy = CIRCUIT, **kw: object) -> App:
        app = App(mode, Outbox(store, policy=policy, name="t", **kw), otel, circuit)  # type: ignore[arg-type]
        made.append(app)
        return app

    yield make
    for app in made:
        app.close()


def test_down_then_up_every_write_applied_once_in_order(app_factory: Callable[..., App], store_url: str,
                                                        ledger: Ledger) -> None:
    app = app_factory(store_url)
    closed_at: list[float] = []

    def listener(name: str, old: str, new: str) -> None:
        if new == "closed":
            closed_at.append(time.monotonic())

    remove = add_transition_listener(listener)
    try:
        ledger.down = True
        ids = []
        for n in range(12):
            with pytest.raises(RequestDeferred) as caught:
                app.request("POST", f"{ledger.url}/orders", content=b"order-%02d" % n)
            assert caught.value.upstream == ledger.url.replace("http://", "http://") and caught.value.id
            assert caught.value.reason in ("503", "circuit_open")
            ids.append(caught.value.id)
        assert len(set(ids)) == 12 and app.outbox.store.stats().pending == 12
        ledger.down = False
        wait_for(lambda: len(ledger.applied) == 12)
        assert closed_at, "the circuit closed"
        assert ledger.times[-1] - closed_at[0] < 5.0  # within seconds of the circuit closing
        assert ledger.applied == [b"order-%02d" % n for n in range(12)]  # once each, in order
        assert ledger.missing_key == 0
        wait_for(lambda: app.outbox.store.stats().pending == 0)
    finally:
        remove()


def test_what_is_never_deferred(app_factory: Callable[..., App], tmp_path: Path, ledger: Ledger) -> None:
    app = app_factory(str(tmp_path / "o.sqlite3"), OutboxPolicy(strip_headers=frozenset(), max_body=100),
                      CircuitPolicy(fail_max=100))
    ledger.down = True
    assert app.request("GET", f"{ledger.url}/r").status_code == 503  # reads: the answer as always
    with pytest.raises(ValueError, match=r'extensions\["outbox"\]=True on a GET'):
        app.request("GET", f"{ledger.url}/r", extensions={"outbox": True})
    assert app.request("POST", f"{ledger.url}/w", content=b"x", extensions={"outbox": False}).status_code == 503
    big = app.request("POST", f"{ledger.url}/w", content=b"x" * 101)
    assert big.status_code == 503 and "too_large" in big.extensions["outbox_not_deferred"]
    ledger.down = False
    assert app.request("POST", f"{ledger.url}/w", content=b"ok").status_code == 201
    assert app.outbox.store.stats().pending == 0


def test_unreplayable_body_keeps_the_error_type_and_says_why(app_factory: Callable[..., App], tmp_path: Path,
                                                             mode: str) -> None:
    from otel_hardening.testing._upstream import closed_port

    app = app_factory(str(tmp_path / "o.sqlite3"))
    url = f"http://127.0.0.1:{closed_port()}/w"
    if mode == "async":
        async def body() -> object:
            yield b"chunk"
        content: object = body()
    else:
        content = iter([b"chunk"])
    with pytest.raises(httpx.ConnectError) as caught:
        app.request("POST", url, content=content)
    assert type(caught.value) is httpx.ConnectError
    assert caught.value.outbox_not_deferred == "not_replayable"  # type: ignore[attr-defined]
    assert any("cannot be sent again" in n for n in getattr(caught.value, "__notes__", []))
    with pytest.raises(RequestDeferred) as deferred:  # a bytes body to the same dead port is deferred
        app.request("POST", url, content=b"fine")
    assert deferred.value.reason == "ConnectError" and isinstance(deferred.value.__cause__, httpx.ConnectError)


def test_idempotency_key_is_kept_when_the_app_sets_one(app_factory: Callable[..., App], tmp_path: Path,
                                                       ledger: Ledger) -> None:
    app = app_factory(str(tmp_path / "o.sqlite3"))
    ledger.down = True
    with pytest.raises(RequestDeferred) as caught:
        app.request("POST", f"{ledger.url}/w", content=b"a", headers={"Idempotency-Key": "mine-1"})
    assert caught.value.idempotency_key == "mine-1"
    ledger.down = False
    wait_for(lambda: ledger.keys == {"mine-1"})


def test_only_marked_requests_when_not_deferring_all(app_factory: Callable[..., App], tmp_path: Path,
                                                     ledger: Ledger) -> None:
    policy = OutboxPolicy(strip_headers=frozenset(), defer_all=False)
    app = app_factory(str(tmp_path / "o.sqlite3"), policy)
    ledger.down = True
    assert app.request("POST", f"{ledger.url}/w", content=b"a").status_code == 503
    with pytest.raises(RequestDeferred):
        app.request("POST", f"{ledger.url}/w", content=b"b", extensions={"outbox": True})


def test_full_store_refuses_with_the_cause_and_loses_nothing(app_factory: Callable[..., App], store_url: str,
                                                             ledger: Ledger) -> None:
    app = app_factory(store_url, OutboxPolicy(strip_headers=frozenset(), max_entries=2, poll=60))
    app.outbox.stop()  # nothing is replayed meanwhile
    ledger.down = True
    kept = []
    for n in range(2):
        with pytest.raises(RequestDeferred) as caught:
            app.request("POST", f"{ledger.url}/w", content=b"%d" % n)
        kept.append(caught.value.id)
    with pytest.raises(OutboxRefused) as refused:
        app.request("POST", f"{ledger.url}/w", content=b"2")
    assert refused.value.reason == "full" and "max_entries=2" in str(refused.value)
    assert isinstance(refused.value, httpx.TransportError)
    assert [e.id for e in app.outbox.store.entries(dead=False)] == kept


@pytest.mark.redis
def test_redis_down_refuses_with_the_cause(app_factory: Callable[..., App], redis_server: object,
                                           ledger: Ledger) -> None:
    app = app_factory(redis_server.url)  # type: ignore[attr-defined]
    ledger.down = True
    redis_server.stop()  # type: ignore[attr-defined]
    with pytest.raises(OutboxRefused) as refused:
        app.request("POST", f"{ledger.url}/w", content=b"x")
    assert refused.value.reason == "store_error" and "ConnectionError" in str(refused.value)
    response = refused.value.response  # the call's own failure: the 503 (an exception's is __cause__)
    assert response is not None and response.status_code == 503


def test_credentials_are_not_stored_and_replays_are_re_signed(app_factory: Callable[..., App], tmp_path: Path,
                                                              ledger: Ledger) -> None:
    with pytest.raises(ValueError, match=r"before_replay=.*strip_headers=\(\)"):
        Outbox(str(tmp_path / "x.sqlite3"), name="t")
    seen: list[str] = []
    ledger_rule = ledger.server.rule

    def rule(request: ReceivedRequest) -> Reply | None:
        seen.append({k.lower(): v for k, v in request.headers.items()}.get("authorization", ""))
        return ledger_rule(request) if ledger_rule is not None else None

    ledger.server.rule = rule

    def sign(request: httpx.Request) -> httpx.Request:
        request.headers["Authorization"] = "Bearer fresh"
        return request

    app = app_factory(str(tmp_path / "o.sqlite3"), OutboxPolicy(backoff_initial=0.1, poll=0.5),
                      before_replay=sign)
    ledger.down = True
    with pytest.raises(RequestDeferred) as caught:
        app.request("POST", f"{ledger.url}/w", content=b"x", headers={"Authorization": "Bearer old-secret"})
    stored = app.outbox.store.get(caught.value.id)
    assert stored is not None and stored.header("authorization") is None
    assert b"old-secret" not in (tmp_path / "o.sqlite3").read_bytes() + (tmp_path / "o.sqlite3-wal").read_bytes()
    ledger.down = False
    wait_for(lambda: len(ledger.applied) == 1)
    assert seen[-1] == "Bearer fresh"


def test_dead_letters_after_max_replays_and_on_rejection(app_factory: Callable[..., App], tmp_path: Path,
                                                         ledger: Ledger) -> None:
    policy = OutboxPolicy(strip_headers=frozenset(), max_replays=2, backoff_initial=0.05, backoff_max=0.1, poll=0.2)
    app = app_factory(str(tmp_path / "o.sqlite3"), policy)
    ledger.down = True
    with pytest.raises(RequestDeferred) as first:
        app.request("POST", f"{ledger.url}/w", content=b"a")
    wait_for(lambda: app.outbox.store.stats().dead == 1)
    dead = app.outbox.store.get(first.value.id)
    assert dead is not None and dead.dead_reason == "max_replays" and dead.attempts == 2
    with pytest.raises(RequestDeferred) as second:
        app.request("POST", f"{ledger.url}/bad", content=b"b")
    before = ledger.server.count("/bad")
    ledger.server.on("/bad", *[Reply(422)] * 5)  # the upstream is back and says no: not worth retrying
    ledger.down = False
    wait_for(lambda: app.outbox.store.stats().dead == 2)
    rejected = app.outbox.store.get(second.value.id)
    assert rejected is not None and (rejected.dead_reason, rejected.last_error) == ("rejected", "HTTP 422")
    assert ledger.server.count("/bad") == before + 1  # one replay: a "no" is not asked again
    assert ledger.applied == []


def test_one_replay_thread_serves_every_outbox_of_the_process(tmp_path: Path, otel: HardeningTelemetry) -> None:
    """Three outboxes, two upstreams down then up: one replay thread delivers every write, each once and in
    order per outbox; a stopped outbox leaves it, and the thread ends when no outbox replays."""
    import threading

    ledgers = [Ledger(), Ledger()]
    outboxes = [Outbox(str(tmp_path / f"{n}.sqlite3"), policy=FAST, name=f"shared-{n}") for n in range(3)]
    clients = [otel_hardening.harden(httpx.Client(timeout=5), retry=RETRY, circuit=CIRCUIT, outbox=outbox,
                                     tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider)
               for outbox in outboxes]
    try:
        threads = {outbox.replayer._thread for outbox in outboxes}
        assert len(threads) == 1 and None not in threads
        assert [t.name for t in threading.enumerate()].count("otel-hardening-outbox") == 1
        for ledger in ledgers:
            ledger.down = True
        for n in range(12):
            client, ledger = clients[n % 3], ledgers[n % 2]
            with pytest.raises(RequestDeferred):
                client.post(f"{ledger.url}/w", content=b"%d" % n)
        for ledger in ledgers:
            ledger.down = False
        wait_for(lambda: sum(len(ledger.applied) for ledger in ledgers) == 12)
        for parity, ledger in enumerate(ledgers):
            applied = [int(body) for body in ledger.applied]
            assert sorted(applied) == list(range(parity, 12, 2)) and ledger.duplicates == 0
            for k in range(3):  # in order per outbox and upstream
                mine = [n for n in applied if n % 3 == k]
                assert mine == sorted(mine), applied
        outboxes[0].stop()
        assert outboxes[0].replayer._thread is None and outboxes[1].replayer._thread in threads
    finally:
        for outbox, client in zip(outboxes, clients, strict=True):
            outbox.close()
            client.close()
        for ledger in ledgers:
            ledger.close()
    wait_for(lambda: "otel-hardening-outbox" not in [t.name for t in threading.enumerate()], timeout=10)

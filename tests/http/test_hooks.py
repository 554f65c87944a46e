"""Guarded private hooks: with any private name of httpx, httpcore or pybreaker missing or changed, a
client is left exactly as it was, one log line names the package, its version and the name, the bypass
is counted (hardening.bypassed{reason="hook_missing"}) and health's hardening:self is degraded."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import httpx
import pybreaker
import pytest

import otel_hardening
from otel_hardening import CircuitPolicy, RetryPolicy, _logging, health
from otel_hardening.health import HealthConfig, Status
from otel_hardening.health._runtime import Monitor
from otel_hardening.http import bypass
from otel_hardening.http.engine import Engine
from otel_hardening.http.harden import is_hardened
from otel_hardening.testing import FlakyUpstream, closed_port
from tests.conftest import Otel
from tests.http.test_install import CONFIG


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    def clean() -> None:
        bypass.reset()
        with _logging._seen_lock:
            _logging._seen.difference_update({k for k in _logging._seen if k.startswith("hook:")})

    clean()
    yield
    clean()


Patch = Callable[[pytest.MonkeyPatch, Any], None]


def _renamed_in_breaker(attribute: str) -> Patch:
    def patch(mp: pytest.MonkeyPatch, client: Any) -> None:
        original = pybreaker.CircuitBreaker.__init__

        def init(self: pybreaker.CircuitBreaker, *args: Any, **kwargs: Any) -> None:
            original(self, *args, **kwargs)
            vars(self)[f"{attribute}_renamed"] = vars(self).pop(attribute)

        mp.setattr(pybreaker.CircuitBreaker, "__init__", init)
    return patch


def _send_no_longer_calls_the_step(mp: pytest.MonkeyPatch, client: Any) -> None:
    def _send_handling_redirects(self: httpx.Client, request: httpx.Request, follow_redirects: bool = False,
                                 history: list[httpx.Response] | None = None) -> httpx.Response:
        raise NotImplementedError  # a future httpx that sends through a step of another name

    mp.setattr(httpx.Client, "_send_handling_redirects", _send_handling_redirects)


def _sync_step_on_async_client(mp: pytest.MonkeyPatch, client: Any) -> None:
    def step(self: httpx.AsyncClient, request: httpx.Request) -> httpx.Response:
        raise NotImplementedError

    mp.setattr(httpx.AsyncClient, "_send_single_request", step)


@dataclass(frozen=True)
class Case:
    package: str
    name: str  # as the log line says it
    patch: Patch
    sends: bool = True  # httpx still works without the hook: the request goes out plain
    is_async: bool = False


CASES = {
    "Client._send_single_request missing": Case(
        "httpx", "Client._send_single_request",
        lambda mp, c: mp.delattr(httpx.Client, "_send_single_request"), sends=False),
    "Client._send_single_request no longer called": Case(
        "httpx", "no longer called by Client", _send_no_longer_calls_the_step, sends=False),
    "AsyncClient._send_single_request not async": Case(
        "httpx", "AsyncClient._send_single_request", _sync_step_on_async_client, sends=False, is_async=True),
    "client._transport missing": Case(
        "httpx", "Client._transport", lambda mp, c: mp.delattr(c, "_transport"), sends=False),
    "client._mounts missing": Case(
        "httpx", "Client._mounts", lambda mp, c: mp.delattr(c, "_mounts"), sends=False),
    "HTTPTransport._pool missing": Case(
        "httpx", "HTTPTransport._pool", lambda mp, c: mp.delattr(c._transport, "_pool"), sends=False),
    "pool._network_backend missing": Case(
        "httpcore", "ConnectionPool._network_backend",
        lambda mp, c: mp.delattr(c._transport._pool, "_network_backend"), sends=False),
    "pool._requests missing": Case(
        "httpcore", "ConnectionPool._requests", lambda mp, c: mp.delattr(c._transport._pool, "_requests"), sends=False),
    "pool._max_keepalive_connections not an int": Case(
        "httpcore", "ConnectionPool._max_keepalive_connections",
        lambda mp, c: mp.setattr(c._transport._pool, "_max_keepalive_connections", None), sends=False),
    "CircuitBreakerState._handle_error missing": Case(
        "pybreaker", "CircuitBreakerState._handle_error",
        lambda mp, c: mp.delattr(pybreaker.CircuitBreakerState, "_handle_error")),
    "CircuitBreakerState._handle_success changed": Case(
        "pybreaker", "CircuitBreakerState._handle_success",
        lambda mp, c: mp.setattr(pybreaker.CircuitBreakerState, "_handle_success", lambda self, extra: None)),
    "CircuitBreaker._state renamed": Case("pybreaker", "CircuitBreaker._state ", _renamed_in_breaker("_state")),
    "CircuitBreaker._state_storage renamed": Case(
        "pybreaker", "CircuitBreaker._state_storage", _renamed_in_breaker("_state_storage")),
}


def _hook_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "otel_hardening" and "left unhardened" in r.getMessage()]


def _self_component() -> health.ComponentStatus:
    """hardening:self as a fresh health monitor (no recovery hold carried over from other tests) sees it."""
    monitor = Monitor(HealthConfig(recovery_hold=0.0), on_change=lambda previous, report: None)
    return {c.name: c for c in monitor.evaluate().components}["hardening:self"]


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_a_missing_hook_leaves_the_client_as_it_was_said_counted_and_degraded(
        case: Case, otel: Otel, server: FlakyUpstream, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, "otel_hardening")
    assert _self_component().status is Status.HEALTHY
    client: httpx.Client | httpx.AsyncClient = httpx.AsyncClient() if case.is_async else httpx.Client()
    before = dict(vars(client))
    pool = getattr(client._transport, "_pool", None)
    case.patch(monkeypatch, client)
    for _ in range(2):  # a second client: counted again, not logged again
        otel_hardening.harden(client, tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider)

    assert not is_hardened(client)
    assert "_send_single_request" not in vars(client)  # no patch
    assert {k: v for k, v in vars(client).items() if k in before} == {k: v for k, v in before.items()
                                                                      if k in vars(client)}
    assert pool is None or "_otel_hardening" not in vars(pool)
    [line] = _hook_lines(caplog)
    assert f"{case.package} {version(case.package)} " in line and case.name.strip() in line, line
    assert otel.total("hardening.bypassed", reason="hook_missing") == 2
    assert otel.total("hardening.bypassed", reason="internal_error") == 0
    component = _self_component()
    assert component.status is Status.DEGRADED and "hook_missing" in component.reason
    assert case.name.strip() in component.reason and version(case.package) in component.reason

    if case.sends and isinstance(client, httpx.Client):
        assert client.get(server.url).status_code == 200  # the request goes out, plain
        assert otel.finished("hardening.request") == []
    monkeypatch.undo()
    if isinstance(client, httpx.Client):
        client.close()


def test_install_leaves_new_clients_unhardened_when_a_hook_is_missing(
        otel: Otel, server: FlakyUpstream, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, "otel_hardening")
    monkeypatch.delattr(pybreaker.CircuitBreakerState, "_handle_error")
    otel_hardening.install(CONFIG, tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider)
    try:
        with httpx.Client() as one, httpx.Client() as two:
            assert not is_hardened(one) and not is_hardened(two)
            assert one.get(server.url).status_code == 200
    finally:
        otel_hardening.uninstall()
    assert len(_hook_lines(caplog)) == 1
    assert otel.total("hardening.bypassed", reason="hook_missing") == 2
    assert otel.finished("hardening.request") == []


def test_with_every_hook_in_place_nothing_is_bypassed(otel: Otel, server: FlakyUpstream,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    with otel_hardening.harden(httpx.Client(), tracer_provider=otel.tracer_provider,
                               meter_provider=otel.meter_provider) as client:
        assert is_hardened(client)
        assert client.get(server.url).status_code == 200
    assert _hook_lines(caplog) == []
    assert [v for a, v in otel.points("hardening.bypassed")] == [0, 0, 0]  # every reason, from the start
    assert _self_component().status is Status.HEALTHY


def test_an_internal_failure_sends_the_request_unhardened_counted_and_degraded(
        otel: Otel, server: FlakyUpstream, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: Engine, request: httpx.Request) -> None:
        raise RuntimeError("the layer's own bug")

    monkeypatch.setattr(Engine, "begin", broken)
    with otel_hardening.harden(httpx.Client(), tracer_provider=otel.tracer_provider,
                               meter_provider=otel.meter_provider) as client:
        for _ in range(3):
            assert client.get(server.url).status_code == 200
    assert server.hits == 3
    assert otel.total("hardening.bypassed", reason="internal_error") == 3
    component = _self_component()
    assert component.status is Status.DEGRADED and "internal_error: 3 over" in component.reason


def test_unreachable_circuit_storage_is_counted_as_a_storage_bypass(otel: Otel, server: FlakyUpstream) -> None:
    dead = f"redis://127.0.0.1:{closed_port()}/0"
    with otel_hardening.harden(httpx.Client(), retry=RetryPolicy(max_attempts=1),
                               circuit=CircuitPolicy(storage=dead), tracer_provider=otel.tracer_provider,
                               meter_provider=otel.meter_provider) as client:
        for _ in range(3):
            assert client.get(server.url).status_code == 200
    assert otel.total("hardening.bypassed", reason="storage_error") == 1  # once per fallback, not per request
    component = _self_component()
    assert component.status is Status.DEGRADED and "storage_error: 1 over" in component.reason
    assert "Redis" in component.reason and dead not in component.reason

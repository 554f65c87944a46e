"""install() / uninstall(), composition with opentelemetry-instrumentation-httpx, and zero code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import httpx
import pytest
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

import otel_hardening
from otel_hardening import HardeningConfig, RetryPolicy
from otel_hardening.config import BudgetPolicy
from otel_hardening.health.config import HealthConfig
from otel_hardening.http.harden import is_hardened
from otel_hardening.http.send import hardened_send
from otel_hardening.resources.config import ResourceConfig
from otel_hardening.testing import FlakyUpstream, Reply
from tests.conftest import Otel

CONFIG = HardeningConfig(
    retry=RetryPolicy(max_attempts=3, backoff_initial=0.01), budget=BudgetPolicy(min_per_second=100),
    resources=ResourceConfig(enabled=False), health=HealthConfig(enabled=False),
)


@pytest.fixture
def installed(otel: Otel) -> Iterator[Otel]:
    otel_hardening.install(CONFIG, tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider)
    yield otel
    otel_hardening.uninstall()


def test_install_hardens_every_new_client_and_traces_each_attempt(installed: Otel, server: FlakyUpstream) -> None:
    assert HTTPXClientInstrumentor().is_instrumented_by_opentelemetry
    server.then(Reply(503))
    with httpx.Client(mounts={"http://example.invalid": httpx.HTTPTransport()}) as client:
        assert is_hardened(client)
        # the transports are the application's own (send.py): hardening is per client, mounts included
        assert all(type(t) is httpx.HTTPTransport for t in (client._transport, *client._mounts.values()))
        assert client.get(server.url).status_code == 200
    assert len([s for s in installed.finished() if s.kind.name == "CLIENT"]) == 2
    assert len(installed.finished("hardening.request")) == 1


async def test_install_hardens_async_clients(installed: Otel, server: FlakyUpstream) -> None:
    server.then(Reply(502))
    async with httpx.AsyncClient() as client:
        assert is_hardened(client)
        assert (await client.get(server.url)).status_code == 200
    assert server.hits == 2


def test_uninstall_restores_plain_behaviour(otel: Otel, server: FlakyUpstream) -> None:
    otel_hardening.install(CONFIG, tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider)
    old = httpx.Client()
    otel_hardening.uninstall()
    assert not HTTPXClientInstrumentor().is_instrumented_by_opentelemetry  # install() turned it on
    new = httpx.Client()
    assert not is_hardened(new)
    server.default = Reply(503)
    assert old.get(server.url).status_code == 503  # the old client passes straight through now
    assert new.get(server.url).status_code == 503
    assert server.hits == 2
    old.close()
    new.close()


@pytest.mark.parametrize("first", ["httpx", "hardening"])
def test_composes_with_otel_httpx_in_either_order(first: str, otel: Otel, server: FlakyUpstream) -> None:
    httpx_instrumentor = HTTPXClientInstrumentor()

    def instrument_httpx() -> None:
        httpx_instrumentor.instrument(tracer_provider=otel.tracer_provider)

    def install() -> None:
        otel_hardening.install(CONFIG, tracer_provider=otel.tracer_provider,
                               meter_provider=otel.meter_provider)

    steps = [instrument_httpx, install] if first == "httpx" else [install, instrument_httpx]
    for step in steps:
        step()
    try:
        server.then(Reply(503))
        with httpx.Client() as client:
            assert client.get(server.url).status_code == 200
        assert len([s for s in otel.finished() if s.kind.name == "CLIENT"]) == 2
        otel_hardening.uninstall()
        # uninstalling hardening leaves the OTel instrumentation the user turned on intact
        otel.spans.clear()
        if first == "httpx":
            assert httpx_instrumentor.is_instrumented_by_opentelemetry
            with httpx.Client() as client:
                client.get(server.url)
            assert len([s for s in otel.finished() if s.kind.name == "CLIENT"]) == 1
    finally:
        otel_hardening.uninstall()
        if httpx_instrumentor.is_instrumented_by_opentelemetry:
            httpx_instrumentor.uninstrument()


def test_uninstrumenting_httpx_leaves_hardening_intact(installed: Otel, server: FlakyUpstream) -> None:
    HTTPXClientInstrumentor().uninstrument()
    server.then(Reply(503))
    with httpx.Client() as client:
        assert client.get(server.url).status_code == 200
    assert server.hits == 2


def test_bad_env_config_logs_once_and_uses_default(caplog: pytest.LogCaptureFixture) -> None:
    env = {"OTEL_PYTHON_HARDENING_RETRY_MAX_ATTEMPTS": "abc",
           "OTEL_PYTHON_HARDENING_CIRCUIT_STORAGE": "mysql://x"}
    config = HardeningConfig.from_env(env)
    assert config.retry.max_attempts == 3
    assert config.circuit.storage == "memory"
    messages = [r.getMessage() for r in caplog.records]
    (attempts,) = [m for m in messages if "RETRY_MAX_ATTEMPTS" in m]
    assert "'abc'" in attempts and "whole number >= 1" in attempts and "default 3" in attempts
    HardeningConfig.from_env(env)
    assert len([r for r in caplog.records if "RETRY_MAX_ATTEMPTS" in r.getMessage()]) == 1


def test_env_config_is_read() -> None:
    config = HardeningConfig.from_env({
        "OTEL_PYTHON_HARDENING_RETRY_MAX_ATTEMPTS": "5",
        "OTEL_PYTHON_HARDENING_RETRY_STATUSES": "500,503",
        "OTEL_PYTHON_HARDENING_CIRCUIT_FAIL_MAX": "7",
        "OTEL_PYTHON_HARDENING_RETRY_NON_IDEMPOTENT": "yes",
        "OTEL_PYTHON_HARDENING_RETRY_BUDGET_RATIO": "0.1",
    })
    assert config.retry.max_attempts == 5
    assert config.retry.retry_statuses == {500, 503}
    assert config.circuit.fail_max == 7
    assert config.retry.retry_non_idempotent
    assert config.budget.ratio == 0.1


APP = textwrap.dedent("""
    import json, sys, httpx
    with httpx.Client() as client:
        response = client.get(sys.argv[1])
    from otel_hardening.http.harden import is_hardened
    transport = type(client._transport).__name__
    with open(sys.argv[2], "w") as f:
        json.dump({"status": response.status_code, "transport": transport, "hardened": is_hardened(client)}, f)
""")


@pytest.mark.parametrize("disabled", [False, True])
def test_opentelemetry_instrument_loads_us_with_zero_code(disabled: bool, server: FlakyUpstream, tmp_path) -> None:  # type: ignore[no-untyped-def]
    server.then(Reply(503))
    app = tmp_path / "app.py"
    app.write_text(APP)
    env = {**os.environ, "OTEL_TRACES_EXPORTER": "console", "OTEL_METRICS_EXPORTER": "none",
           "OTEL_LOGS_EXPORTER": "none", "OTEL_PYTHON_HARDENING_RETRY_BACKOFF_INITIAL": "0.01",
           "OTEL_PYTHON_HARDENING_RESOURCES": "off", "OTEL_SERVICE_NAME": "zero-code-test"}
    if disabled:
        env["OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"] = "hardening"
    result_file = tmp_path / "result.json"
    out = subprocess.run(["opentelemetry-instrument", sys.executable, str(app), server.url, str(result_file)],
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    result = json.loads(result_file.read_text())
    if disabled:
        assert result == {"status": 503, "transport": "HTTPTransport", "hardened": False}
        assert server.hits == 1
    else:
        assert result == {"status": 200, "transport": "HTTPTransport", "hardened": True}
        assert server.hits == 2
        assert '"http.request.resend_count": 1' in out.stdout + out.stderr


def test_install_again_with_the_same_config_does_nothing_with_another_raises(installed: Otel) -> None:
    otel_hardening.install(CONFIG, tracer_provider=installed.tracer_provider,
                           meter_provider=installed.meter_provider)  # equal: nothing happens
    other = HardeningConfig(retry=RetryPolicy(max_attempts=5), resources=CONFIG.resources, health=CONFIG.health)
    with pytest.raises(ValueError, match=r"uninstall\(\) first"):
        otel_hardening.install(other, tracer_provider=installed.tracer_provider,
                               meter_provider=installed.meter_provider)
    with pytest.raises(ValueError, match=r"providers; call otel_hardening.uninstall\(\) first"):
        otel_hardening.install(CONFIG)  # the global providers are not the installed ones
    with httpx.Client() as client:  # still the first installation, untouched
        sender = hardened_send(client)
        assert sender is not None
        engine = sender.engine
        assert engine.retry == CONFIG.retry and engine.telemetry.tracer is not None
    otel_hardening.uninstall()
    otel_hardening.install(other, tracer_provider=installed.tracer_provider,
                           meter_provider=installed.meter_provider)  # after uninstall(): applied
    with httpx.Client() as client:
        sender = hardened_send(client)
        assert sender is not None and sender.engine.retry.max_attempts == 5


def test_harden_after_install_inherits_the_installed_config_and_providers(otel: Otel,
                                                                          server: FlakyUpstream) -> None:
    from otel_hardening import CircuitOpenError, CircuitPolicy

    config = HardeningConfig(retry=RetryPolicy(max_attempts=3, backoff_initial=0.01),
                             circuit=CircuitPolicy(fail_max=2, reset_timeout=30),
                             budget=BudgetPolicy(min_per_second=100), resources=CONFIG.resources,
                             health=CONFIG.health, instrument_httpx=False)
    otel_hardening.install(config, tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider)
    try:
        server.default = Reply(503)
        client = otel_hardening.harden(httpx.Client(), retry=RetryPolicy(max_attempts=1))
        for _ in range(2):  # the installed circuit (fail_max=2), not the environment's (5)
            assert client.get(server.url).status_code == 503
        with pytest.raises(CircuitOpenError):
            client.get(server.url)
        assert server.hits == 2  # its own retry policy: one attempt each
        client.close()
        # spans and metrics went to the installed providers, not the global ones
        assert len(otel.finished("hardening.request")) == 2  # the one that opened it, the rejected one
        assert otel.calls() == 3
    finally:
        otel_hardening.uninstall()


def test_uninstall_gives_every_client_it_hardened_its_own_step_back(otel: Otel, server: FlakyUpstream) -> None:
    otel_hardening.install(CONFIG, tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider)
    plain_sync, plain_async = httpx.Client(), httpx.AsyncClient()
    kept = otel_hardening.harden(httpx.Client())  # hardened on purpose: stays hardened

    class Own(httpx.Client):
        pass

    own = Own()
    assert all(is_hardened(c) for c in (plain_sync, plain_async, kept, own))
    otel_hardening.uninstall()
    assert not any(is_hardened(c) for c in (plain_sync, plain_async, own))
    assert "_send_single_request" not in vars(plain_sync) and "_send_single_request" not in vars(plain_async)
    assert is_hardened(kept)
    server.default = Reply(503)
    assert plain_sync.get(server.url).status_code == 503
    assert server.hits == 1
    assert kept.get(server.url).status_code == 503
    assert server.hits == 1 + 3  # still retried
    for client in (plain_sync, kept, own):
        client.close()


def test_uninstall_restores_a_step_someone_set_before(otel: Otel, server: FlakyUpstream) -> None:
    calls: list[str] = []
    client = httpx.Client()

    def theirs(request: httpx.Request) -> httpx.Response:
        calls.append("theirs")
        return httpx.Client._send_single_request(client, request)

    client._send_single_request = theirs  # type: ignore[method-assign]
    otel_hardening.install(CONFIG, tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider)
    from otel_hardening.http.harden import wrap_client
    from otel_hardening.instrumentor import HardeningInstrumentor

    installation = HardeningInstrumentor._installation
    assert installation is not None
    wrap_client(client, installation.engine)  # what install() does to a new client, on one that has a step
    assert is_hardened(client)
    otel_hardening.uninstall()
    assert vars(client)["_send_single_request"] is theirs
    assert client.get(server.url).status_code == 200 and calls == ["theirs"]
    client.close()


def test_the_instrumentors_own_uninstrument_restores_the_clients_too(otel: Otel) -> None:
    """Zero code turns it on through HardeningInstrumentor; its uninstrument() is uninstall() too."""
    from otel_hardening import HardeningInstrumentor

    instrumentor = HardeningInstrumentor()
    instrumentor.instrument(config=CONFIG, tracer_provider=otel.tracer_provider)
    client = httpx.Client()
    assert is_hardened(client)
    instrumentor.uninstrument()
    assert not is_hardened(client) and "_send_single_request" not in vars(client)
    client.close()

"""Turning the outbox on for every client without touching each one: ``install(outbox=...)`` and
``OTEL_PYTHON_HARDENING_OUTBOX`` (what zero code reads). Real SQLite files, a real upstream."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import otel_hardening
from otel_hardening import CircuitPolicy, HardeningConfig, RetryPolicy
from otel_hardening.instrumentor import HardeningInstrumentor
from otel_hardening.outbox import Outbox, OutboxPolicy, RequestDeferred, _health
from otel_hardening.testing import HardeningTelemetry
from otel_hardening.testing._upstream import ReceivedRequest
from tests.outbox.conftest import Ledger
from tests.outbox.test_delivery import wait_for

FAST = OutboxPolicy(strip_headers=frozenset(), backoff_initial=0.1, backoff_max=0.5, poll=0.5)
CONFIG = HardeningConfig(retry=RetryPolicy(max_attempts=2, backoff_initial=0.01, backoff_max=0.02),
                         circuit=CircuitPolicy(fail_max=3, reset_timeout=0.5), resources=HardeningConfig().resources,
                         health=HardeningConfig().health)
QUIET = {"OTEL_PYTHON_HARDENING_RESOURCES": "off", "OTEL_PYTHON_HARDENING_HEALTH": "off"}


@pytest.fixture
def otel() -> Iterator[HardeningTelemetry]:
    yield HardeningTelemetry()
    otel_hardening.uninstall()


def _install(otel: HardeningTelemetry, config: HardeningConfig, outbox: Outbox | None = None) -> None:
    otel_hardening.install(config, tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider,
                           outbox=outbox)


def _quiet(config: HardeningConfig, **kw: object) -> HardeningConfig:
    from dataclasses import replace

    return replace(config, resources=replace(config.resources, enabled=False),
                   health=replace(config.health, enabled=False), **kw)  # type: ignore[arg-type]


def test_install_outbox_defers_the_writes_of_every_client_built_after_it(otel: HardeningTelemetry, tmp_path: Path,
                                                                         ledger: Ledger) -> None:
    outbox = Outbox(str(tmp_path / "o.sqlite3"), policy=FAST, name="installed")
    _install(otel, _quiet(CONFIG), outbox)
    with pytest.raises(ValueError, match="another outbox"):
        _install(otel, _quiet(CONFIG), Outbox(str(tmp_path / "other.sqlite3"), policy=FAST, name="other"))
    ledger.down = True
    sync_client = httpx.Client(timeout=5)  # not hardened by hand: install() did it
    with pytest.raises(RequestDeferred):
        sync_client.post(f"{ledger.url}/orders", content=b"sync-1")

    async def post_async() -> None:
        async with httpx.AsyncClient(timeout=5) as client:
            await client.post(f"{ledger.url}/orders", content=b"async-1")

    with pytest.raises(RequestDeferred):
        asyncio.run(post_async())
    with pytest.raises(otel_hardening.CircuitOpenError):  # reads are never deferred
        sync_client.get(f"{ledger.url}/items")
    assert outbox.store.stats().pending == 2
    # replays go through a client of the outbox's own, not one of the app's (it may be any upstream's)
    assert outbox._clients == [] and outbox.replay_client() is not sync_client
    ledger.down = False
    wait_for(lambda: len(ledger.applied) == 2)
    assert ledger.applied == [b"sync-1", b"async-1"] and ledger.duplicates == 0
    sync_client.close()
    otel_hardening.uninstall()
    assert HardeningInstrumentor._installation is None
    # an outbox given to install() is the app's: uninstall leaves it running
    assert outbox.replayer._thread is not None and outbox in _health._live
    outbox.close()


def test_the_variable_names_the_store(caplog: pytest.LogCaptureFixture) -> None:
    def read(value: str) -> str | None:
        return HardeningConfig.from_env({"OTEL_PYTHON_HARDENING_OUTBOX": value}).outbox

    assert HardeningConfig.from_env({}).outbox is None
    assert read("off") is None and read("on") == "" and read("ON") == ""
    assert read("/var/lib/app/outbox.sqlite3") == "/var/lib/app/outbox.sqlite3"
    assert read("sqlite:///tmp/o.sqlite3") == "sqlite:///tmp/o.sqlite3"
    assert read("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    with caplog.at_level(logging.ERROR, logger="otel_hardening"):
        assert read("ftp://files/outbox") is None
    [record] = [r for r in caplog.records if "OTEL_PYTHON_HARDENING_OUTBOX" in r.getMessage()]
    message = record.getMessage()
    assert "'ftp://files/outbox'" in message and "redis://host:port/db" in message and "default off" in message
    with pytest.raises(ValueError, match=r"HardeningConfig.outbox='on': accepted None \(off\)"):
        HardeningConfig(outbox="on")
    with pytest.raises(ValueError, match=r"HardeningConfig\.outbox='ftp://x'"):
        HardeningConfig(outbox="ftp://x")


def test_zero_code_outbox_keeps_credentials_so_replays_are_authorised(otel: HardeningTelemetry, tmp_path: Path,
                                                                      ledger: Ledger) -> None:
    store = tmp_path / "zero.sqlite3"
    env = {**QUIET, "OTEL_PYTHON_HARDENING_OUTBOX": str(store), "OTEL_PYTHON_HARDENING_CIRCUIT_RESET_TIMEOUT": "0.5",
           "OTEL_PYTHON_HARDENING_RETRY_MAX_ATTEMPTS": "1"}
    _install(otel, HardeningConfig.from_env(env))
    installation = HardeningInstrumentor._installation
    assert installation is not None and installation.outbox is not None
    installation.outbox.policy = FAST  # replay within the test's patience; the stored headers are the point
    seen: list[str | None] = []
    rule = ledger.server.rule

    def authorised(request: ReceivedRequest) -> object:
        seen.append({k.lower(): v for k, v in request.headers.items()}.get("authorization"))
        return rule(request)  # type: ignore[misc]

    ledger.server.rule = authorised  # type: ignore[assignment]
    ledger.down = True
    with httpx.Client(timeout=5, headers={"Authorization": "Bearer long-lived-api-key"}) as client, \
            pytest.raises(RequestDeferred):
        client.post(f"{ledger.url}/hooks", content=b"event-1")
    assert store.exists() and (store.stat().st_mode & 0o777) == 0o600
    ledger.down = False
    wait_for(lambda: len(ledger.applied) == 1)
    assert seen and set(seen) == {"Bearer long-lived-api-key"}  # the replay carried the stored credential
    outbox = installation.outbox
    otel_hardening.uninstall()
    # uninstall owned this outbox: it closed it (no replayer thread, no health component left)
    assert outbox.replayer._thread is None and outbox not in _health._live


def test_a_store_that_cannot_be_opened_is_said_and_the_app_runs_without(otel: HardeningTelemetry, tmp_path: Path,
                                                                       ledger: Ledger,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    env = {**QUIET, "OTEL_PYTHON_HARDENING_OUTBOX": str(blocked / "outbox.sqlite3")}
    with caplog.at_level(logging.ERROR, logger="otel_hardening"):
        _install(otel, HardeningConfig.from_env(env))
    [record] = [r for r in caplog.records if "outbox cannot be opened" in r.getMessage()]
    assert "OTEL_PYTHON_HARDENING_OUTBOX=" in record.getMessage() and str(blocked) in record.getMessage()
    installation = HardeningInstrumentor._installation
    assert installation is not None and installation.outbox is None
    with httpx.Client(timeout=5) as client:  # hardened all the same
        assert otel_hardening.http.harden.is_hardened(client)
        # no outbox gave the write an Idempotency-Key: the ledger refuses it, as without an outbox
        assert client.post(f"{ledger.url}/orders", content=b"x").status_code == 400 and ledger.missing_key == 1

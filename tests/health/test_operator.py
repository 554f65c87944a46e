"""What an operator relies on, against real loopback upstreams, real circuits and the real endpoint:
an outage is critical but ready, worse applies at once, recovery is prompt, abuse does not starve
the probes."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

import otel_hardening
from otel_hardening import health
from otel_hardening.config import CircuitPolicy, RetryPolicy
from otel_hardening.health import HealthConfig, Status
from otel_hardening.http.transitions import add_transition_listener
from otel_hardening.testing import FlakyUpstream, HardeningTelemetry, Reply


def gauge_state(otel: HardeningTelemetry) -> str | None:
    data = otel.reader.get_metrics_data()
    for rm in data.resource_metrics if data else []:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                if m.name == "hardening.health.status":
                    for p in m.data.data_points:
                        if p.value == 1:  # type: ignore[union-attr]
                            return str((p.attributes or {})["hardening.health.state"])
    return None


@contextlib.contextmanager
def transitions() -> Iterator[list[tuple[float, str, str]]]:
    seen: list[tuple[float, str, str]] = []
    remove = add_transition_listener(lambda name, old, new: seen.append((time.monotonic(), old, new)))
    try:
        yield seen
    finally:
        remove()


def endpoint() -> str:
    assert health._server is not None
    return f"http://127.0.0.1:{health._server.server_address[1]}"


def test_an_upstream_outage_is_critical_at_once_but_the_process_stays_ready(
        server: FlakyUpstream, otel: HardeningTelemetry) -> None:
    # A 60 s interval: only the transition itself can make the status change in time.
    health.start(HealthConfig(interval=60, endpoint=("127.0.0.1", 0), recovery_hold=30),
                 meter_provider=otel.meter_provider)
    base = endpoint()
    server.always(Reply(503))
    client = otel_hardening.harden(httpx.Client(base_url=server.url),
                                   circuit=CircuitPolicy(fail_max=2, reset_timeout=60),
                                   retry=RetryPolicy(max_attempts=1))
    probe = httpx.Client(base_url=base, timeout=5)
    with client, probe, transitions() as seen:
        assert health.report().status is Status.HEALTHY and gauge_state(otel) == "healthy"
        client.get("/")
        client.get("/")  # the circuit opens on this call's failure
        assert seen and seen[0][2] == "open"
        opened = seen[0][0]
        lag: dict[str, float] = {}
        while len(lag) < 3 and time.monotonic() - opened < 2:
            now = time.monotonic() - opened
            if "report" not in lag and health.report().status is Status.CRITICAL:
                lag["report"] = now
            if "gauge" not in lag and gauge_state(otel) == "critical":
                lag["gauge"] = now
            if "healthz" not in lag and probe.get("/healthz").status_code == 503:
                lag["healthz"] = now
            time.sleep(0.002)
        print("\nworse at once: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in lag.items()))
        assert set(lag) == {"report", "gauge", "healthz"}, lag
        assert max(lag.values()) < 0.1, lag
        report = health.report()
        assert report.ready and report.not_ready == ()
        ready = probe.get("/readyz")
        assert ready.status_code == 200 and ready.json() == {"status": "pass"}
        assert probe.get("/livez").status_code == 200


def test_a_required_upstream_outage_is_not_ready(server: FlakyUpstream) -> None:
    health.start(HealthConfig(interval=60, endpoint=("127.0.0.1", 0), required=frozenset({"127.0.0.1"}),
                              details="always"))
    server.always(Reply(503))
    client = otel_hardening.harden(httpx.Client(base_url=server.url),
                                   circuit=CircuitPolicy(fail_max=2, reset_timeout=60),
                                   retry=RetryPolicy(max_attempts=1))
    with client, httpx.Client(base_url=endpoint(), timeout=5) as probe:
        assert probe.get("/readyz").status_code == 200
        client.get("/")
        client.get("/")
        deadline = time.monotonic() + 2
        while (r := probe.get("/readyz")).status_code != 503:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert r.json()["output"] == f"{server.url}:circuit: circuit open: calls are rejected"
        assert not health.report().ready
        assert probe.get("/livez").status_code == 200  # a restart would not bring the upstream back


def test_recovery_after_a_real_outage_takes_the_hold_plus_at_most_one_interval(server: FlakyUpstream) -> None:
    interval, hold = 0.25, 1.0
    health.start(HealthConfig(interval=interval, recovery_hold=hold, min_calls=5, window=30))
    client = otel_hardening.harden(httpx.Client(base_url=server.url),
                                   circuit=CircuitPolicy(fail_max=3, reset_timeout=0.5),
                                   retry=RetryPolicy(max_attempts=1))
    stop = threading.Event()

    def traffic() -> None:  # steady load, rejected calls included, as a real app keeps calling
        while not stop.is_set():
            with contextlib.suppress(httpx.HTTPError, otel_hardening.CircuitOpenError):
                client.get("/")
            time.sleep(0.01)

    worker = threading.Thread(target=traffic, daemon=True)
    with client, transitions() as seen:
        worker.start()
        try:
            time.sleep(0.5)  # healthy traffic first
            assert health.report().status is Status.HEALTHY
            server.always(Reply(503))
            time.sleep(1.5)  # outage: the circuit opens, calls are rejected, trials fail
            assert health.report().status is Status.CRITICAL and health.report().ready
            server.always(Reply(200))
            deadline = time.monotonic() + 5
            while not seen or seen[-1][2] != "closed":
                assert time.monotonic() < deadline, seen
                time.sleep(0.005)
            closed = seen[-1][0]
            statuses: list[tuple[float, Status]] = []
            while health.report().status is not Status.HEALTHY:
                statuses.append((time.monotonic() - closed, health.report().status))
                assert time.monotonic() - closed < hold + 10 * interval, statuses[-1]
                time.sleep(0.01)
            recovered = time.monotonic() - closed
        finally:
            stop.set()
            worker.join(5)
    print(f"\nrecovery: healthy {recovered:.2f}s after the circuit closed "
          f"(HEALTH_RECOVERY_HOLD={hold}s, HEALTH_INTERVAL={interval}s)")
    assert hold - 0.05 <= recovered <= hold + interval + 0.3, recovered
    ranks = [s.rank for _, s in statuses]
    assert ranks == sorted(ranks, reverse=True), "recovery is monotone: never worse again"


def test_200_slowloris_connections_do_not_starve_liveness_and_readiness_probes() -> None:
    health.start(HealthConfig(interval=60, endpoint=("127.0.0.1", 0)))
    assert health._server is not None
    port = health._server.server_address[1]
    stop = threading.Event()
    attackers: list[socket.socket] = []
    lock = threading.Lock()

    def attack() -> None:
        """200 connections, each trickling a request that never ends; reconnect when cut."""
        while not stop.is_set():
            with lock:
                alive = []
                for s in attackers:
                    try:
                        s.sendall(b"X")
                        alive.append(s)
                    except OSError:
                        s.close()
                attackers[:] = alive
                while len(attackers) < 200 and not stop.is_set():
                    try:
                        s = socket.create_connection(("127.0.0.1", port), timeout=1)
                        s.sendall(b"GET /livez HTTP/1.1\r\nX-Slow: ")
                        attackers.append(s)
                    except OSError:
                        break
            stop.wait(0.5)

    attacker = threading.Thread(target=attack, daemon=True)
    attacker.start()
    try:
        deadline = time.monotonic() + 5
        while len(attackers) < 200:
            assert time.monotonic() < deadline, "could not open 200 connections"
            time.sleep(0.05)
        answered = total = 0
        with httpx.Client(timeout=2) as probe:
            for i in range(200):
                path = ("/livez", "/readyz")[i % 2]
                total += 1
                try:
                    r = probe.get(f"http://127.0.0.1:{port}{path}")
                    answered += r.status_code == 200 and r.json() == {"status": "pass"}
                except httpx.HTTPError as exc:
                    print("probe failed:", repr(exc))
                time.sleep(0.02)
    finally:
        stop.set()
        attacker.join(5)
        for s in attackers:
            s.close()
    print(f"\nslowloris: {answered}/{total} probes answered correctly with 200 slow connections open")
    assert answered >= 0.99 * total
    assert health._server.evicted + health._server.expired > 0  # the attack really was cut


def _exporter_version() -> tuple[int, int]:
    from importlib.metadata import version

    major, minor = version("opentelemetry-exporter-otlp-proto-http").split(".")[:2]
    return int(major), int(minor)


def test_a_logs_endpoint_answering_unimplemented_is_one_steady_degraded_component(
        server: FlakyUpstream, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """The shipped collector without a logs pipeline: every OTLP logs request fails, and health's own
    change records are the only logs this process sends. Before: degraded, healthy, degraded, ..."""
    from opentelemetry.exporter.otlp.proto.http import _log_exporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

    from otel_hardening._logging import forget
    from otel_hardening.health import _export

    forget("health:export:logs")
    server.always(Reply(501, body=b"logs not supported"))
    provider = LoggerProvider()
    provider.add_log_record_processor(BatchLogRecordProcessor(
        _log_exporter.OTLPLogExporter(endpoint=f"{server.url}/v1/logs", timeout=2), schedule_delay_millis=50))
    window = 1.0
    seen: list[Status] = []

    def watch(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            status = health.report().status
            if not seen or seen[-1] is not status:
                seen.append(status)
            time.sleep(0.02)

    try:
        health.start(HealthConfig(interval=0.05, window=window, recovery_hold=0.3), logger_provider=provider)
        watch(6 * window)  # the old code flapped with a period of window + hold
        assert seen == [Status.HEALTHY, Status.DEGRADED], seen  # one change, then steady
        export = {c.name: c for c in health.report().components}["telemetry:export"]
        assert export.status is Status.DEGRADED
        # Before 1.45 the OTLP HTTP exporter retried a 501 as transient (four requests per batch) and
        # its last word was a generic "Failed to export logs batch due to timeout, max retries ...".
        retried = 4 if _exporter_version() < (1, 45) else 1
        last_word = "code: 501" if retried == 1 else "Failed to export logs batch"
        assert "logs export failing since" in export.reason and last_word in export.reason
        announced = [r for r in caplog.records if "logs export is failing" in r.getMessage()]
        assert len(announced) == 1
        assert 1 <= server.count("/v1/logs") <= 3 * retried  # the first records only: no storm

        # Re-checks: the SDK reports a repeated failure once per 20 s; without its duplicate filter
        # (so this test need not wait for it) the same logic runs on a short clock.
        monkeypatch.setattr(_log_exporter._logger, "filters", [])
        monkeypatch.setattr(_export, "SDK_DEDUP", 0.5)
        monkeypatch.setattr(_export, "EXPORT_GRACE", 0.5)
        seen.clear()
        before = server.count("/v1/logs")
        watch(4 * window)
        assert seen == [Status.DEGRADED], seen  # re-checks fail: still steady
        assert 2 <= server.count("/v1/logs") - before <= (4 + 1) * retried  # about one re-check per window

        server.always(Reply(200, body=b""))  # the logs pipeline is added
        seen.clear()
        watch(3 * window + 1.5)
        assert seen[-1] is Status.HEALTHY and seen.count(Status.HEALTHY) == 1, seen  # recovers, stays
    finally:
        health.stop()
        provider.shutdown()

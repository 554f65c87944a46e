"""Process metrics through the SDK: names, units, attributes, system-metrics dedup, failure tolerance."""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
import time
import types
from collections.abc import Callable

import psutil
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from otel_hardening import resources
from otel_hardening.http import clients
from otel_hardening.resources import _metrics
from otel_hardening.resources.config import ResourceConfig

from .conftest import Points, units

FAST = ResourceConfig(interval=0.02, leak_warmup=0.0, leak_window=1.0, hunt_auto=False)

SEMCONV = {
    "process.memory.usage": "By",
    "process.memory.virtual": "By",
    "process.cpu.time": "s",
    "process.cpu.utilization": "1",
    "process.thread.count": "{thread}",
    "process.unix.file_descriptor.count": "{file_descriptor}",
    "cpython.gc.collections": "{collection}",
    "cpython.gc.collected_objects": "{object}",
    "cpython.gc.uncollectable_objects": "{object}",
}
HARDENING = {
    "hardening.process.memory.uss": "By",
    "hardening.process.file_descriptor.usage": "1",
    "hardening.process.socket.count": "{socket}",
    "hardening.httpx.client.open": "{client}",
    "hardening.resource.leak.suspected": "",
    "hardening.memory.growth_rate": "By/s",
    "hardening.fd.growth_rate": "{file_descriptor}/s",
    "hardening.thread.growth_rate": "{thread}/s",
    "hardening.asyncio.task.growth_rate": "{task}/s",
}


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def ticked(n: int = 2) -> None:
    """Let the sampler take ``n`` more samples."""
    state = resources._state
    assert state is not None
    target = state.sampler.latest.at
    for _ in range(n):
        wait_for(lambda t=target: state.sampler.latest.at > t)  # type: ignore[misc]
        target = state.sampler.latest.at


def test_semconv_and_hardening_metrics_with_units(provider: MeterProvider, reader: InMemoryMetricReader,
                                                   collect: Callable[[], Points]) -> None:
    resources.start(FAST, meter_provider=provider)
    ticked()
    time.sleep(0.15)  # past the probe's cache, so CPU utilization has a delta
    got = units(reader)
    for name, unit in {**SEMCONV, **HARDENING}.items():
        assert got.get(name) == unit, name
    p = collect()
    rss = p["process.memory.usage"][0][1]
    assert rss > 1024 * 1024
    assert {a["cpu.mode"] for a, _ in p["process.cpu.time"]} == {"user", "system"}
    assert {a["cpython.gc.generation"] for a, _ in p["cpython.gc.collections"]} == {0, 1, 2}
    # The OS's count: native threads (a gRPC exporter's, say, left by an earlier test) count too, and
    # the sampler reads it a moment before we do, so compare against psutil until a sample agrees.
    wait_for(lambda: collect()["process.thread.count"][0][1] == psutil.Process().num_threads())
    assert 0 < p["hardening.process.file_descriptor.usage"][0][1] < 1
    assert {a["hardening.resource"] for a, _ in p["hardening.resource.leak.suspected"]} == {
        "memory", "fds", "threads", "tasks"}
    assert 0 < p["hardening.process.memory.uss"][0][1] <= rss


def test_cpu_utilization_is_a_share_of_available_cpus(provider: MeterProvider,
                                                      collect: Callable[[], Points]) -> None:
    resources.start(FAST, meter_provider=provider)
    collect()
    end = time.process_time() + 0.3
    while time.process_time() < end:
        pass
    util = {a["cpu.mode"]: v for a, v in collect()["process.cpu.utilization"]}
    assert 0.05 < util["user"] + util["system"] <= 1.0


def test_metrics_that_system_metrics_emits_are_skipped(provider: MeterProvider, collect: Callable[[], Points],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # Stand-in with the same singleton protocol as BaseInstrumentor: class attribute ``_instance``.
    instance = types.SimpleNamespace(
        _is_instrumented_by_opentelemetry=True,
        _config={"process.memory.usage": None, "process.open_file_descriptor.count": None,
                 "cpython.gc.collections": None},
    )
    module = types.ModuleType(_metrics.SYSTEM_METRICS_MODULE)
    module.SystemMetricsInstrumentor = type("SystemMetricsInstrumentor", (), {"_instance": instance})  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, _metrics.SYSTEM_METRICS_MODULE, module)
    resources.start(FAST, meter_provider=provider)
    p = collect()
    for skipped in ("process.memory.usage", "process.unix.file_descriptor.count", "cpython.gc.collections"):
        assert not p.get(skipped), skipped
    assert p["process.memory.virtual"] and p["cpython.gc.collected_objects"]
    instance._is_instrumented_by_opentelemetry = False  # uninstrumented: ours come back
    assert collect()["process.memory.usage"]


def test_stop_silences_and_restart_reuses_the_instruments(provider: MeterProvider,
                                                          collect: Callable[[], Points]) -> None:
    resources.start(FAST, meter_provider=provider)
    assert collect()["process.memory.usage"]
    resources.stop()
    assert not collect().get("process.memory.usage")
    assert resources.snapshot() is None
    resources.start(FAST, meter_provider=provider)
    assert collect()["process.memory.usage"]


def test_start_is_idempotent_and_disabled_config_starts_nothing(provider: MeterProvider) -> None:
    resources.start(ResourceConfig(enabled=False), meter_provider=provider)
    assert resources.snapshot() is None
    resources.start(FAST, meter_provider=provider)
    first = resources._state
    resources.start(FAST, meter_provider=provider)
    assert resources._state is first
    assert [t.name for t in threading.enumerate()].count("otel-hardening-resources") == 1


def test_httpx_clients_alive(provider: MeterProvider, collect: Callable[[], Points],
                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clients, "open_client_count", lambda: 3)
    resources.start(FAST, meter_provider=provider)
    assert collect()["hardening.httpx.client.open"] == [({}, 3)]


def test_sockets_counted_from_the_fd_table(provider: MeterProvider, collect: Callable[[], Points]) -> None:
    resources.start(FAST, meter_provider=provider)
    ticked()
    before = collect()["hardening.process.socket.count"][0][1]
    socks = [socket.socket() for _ in range(3)]
    try:
        ticked()
        assert collect()["hardening.process.socket.count"][0][1] == before + 3
    finally:
        for s in socks:
            s.close()


async def test_asyncio_tasks_per_running_loop(provider: MeterProvider, collect: Callable[[], Points]) -> None:
    resources.start(FAST, meter_provider=provider)
    gate = asyncio.Event()
    tasks = [asyncio.create_task(gate.wait()) for _ in range(5)]
    await asyncio.sleep(0.1)  # the sampler ticks on its own thread meanwhile
    try:
        counts = {a["thread.name"]: v for a, v in collect()["hardening.asyncio.task.count"]}
        assert counts[threading.current_thread().name] >= 5 + 1  # ours plus the test's own task
    finally:
        gate.set()
        await asyncio.gather(*tasks)


def test_sampler_tolerates_access_denied_and_no_such_process(
        provider: MeterProvider, collect: Callable[[], Points], monkeypatch: pytest.MonkeyPatch) -> None:
    def denied(self: object, *a: object) -> None:
        raise psutil.AccessDenied(1)

    def gone(self: object, *a: object) -> None:
        raise psutil.NoSuchProcess(1)

    platform = psutil._psplatform.Process  # the OS layer, under psutil's caching and oneshot
    monkeypatch.setattr(platform, "memory_info", denied)
    monkeypatch.setattr(platform, "memory_full_info", denied)
    monkeypatch.setattr(platform, "num_fds", gone)
    resources.start(FAST, meter_provider=provider)
    ticked(3)
    snap = resources.snapshot()
    assert snap is not None and snap.sampler_alive
    assert snap.memory_usage is None and snap.fd_usage_ratio is None
    p = collect()
    assert not p.get("process.memory.usage") and not p.get("hardening.process.memory.uss")
    assert p["process.thread.count"]  # what can be read still is


def test_stop_leaves_no_thread_behind(provider: MeterProvider) -> None:
    before = set(threading.enumerate())
    resources.start(ResourceConfig(interval=3600.0), meter_provider=provider)
    assert set(threading.enumerate()) - before
    resources.stop()
    resources.stop()
    assert set(threading.enumerate()) - before == set()


def test_sampler_alive_is_false_when_its_thread_died(provider: MeterProvider,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    resources.start(FAST, meter_provider=provider)
    state = resources._state
    assert state is not None

    def die() -> None:
        raise SystemExit  # not an Exception: escapes the tick's guard, as a hard failure would

    monkeypatch.setattr(threading, "excepthook", lambda args: None)
    monkeypatch.setattr(state.sampler, "tick", die)
    wait_for(lambda: not state.sampler._thread.is_alive())  # type: ignore[union-attr]
    snap = resources.snapshot()
    assert snap is not None and snap.sampler_alive is False


def test_a_forked_child_gets_its_own_sampler(provider: MeterProvider) -> None:
    import json
    import os

    resources.start(FAST, meter_provider=provider)
    parent_pid = os.getpid()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report and leave without running pytest's teardown
        try:
            state = resources._state
            assert state is not None
            time.sleep(0.2)
            snap = resources.snapshot()
            names = [t.name for t in threading.enumerate()]
            result = {"alive": snap is not None and snap.sampler_alive,
                      "threads": names.count("otel-hardening-resources"),
                      "ticked": state.sampler.latest.at > 0,
                      "pid_probed": state.binding.probe._process().pid}
            os.write(write_end, json.dumps(result).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    result = json.loads(os.read(read_end, 4096))
    os.close(read_end)
    assert result == {"alive": True, "threads": 1, "ticked": True, "pid_probed": pid}
    assert os.getpid() == parent_pid

"""Observable instruments: their callbacks run on the metric reader's schedule, no thread of ours.

Instruments cannot be removed from a meter, so each meter provider gets one ``Binding`` for the life
of the process: ``stop()`` deactivates it (callbacks then observe nothing) and a later ``start()`` with
the same provider re-activates it with the new probe and sampler.
"""

from __future__ import annotations

import gc
import logging
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from otel_hardening._logging import log_once
from otel_hardening._version import __version__
from otel_hardening.resources._probe import ProcessProbe
from otel_hardening.resources._sampler import Sampler

SCOPE = "otel_hardening"
SYSTEM_METRICS_MODULE = "opentelemetry.instrumentation.system_metrics"
RESOURCE_ATTR = "hardening.resource"
GROWTH_RATES = {
    "memory": ("hardening.memory.growth_rate", "By/s", "RSS growth rate over the leak window."),
    "fds": ("hardening.fd.growth_rate", "{file_descriptor}/s", "Open fd growth rate over the leak window."),
    "threads": ("hardening.thread.growth_rate", "{thread}/s", "Thread growth rate over the leak window."),
    "tasks": ("hardening.asyncio.task.growth_rate", "{task}/s", "Task growth rate over the leak window."),
}


def system_metrics_names() -> frozenset[str]:
    """Metric names opentelemetry-instrumentation-system-metrics emits right now (empty if it is off).

    Read from the instrumentor singleton without constructing it: its ``__init__`` would reset the
    application's configuration.
    """
    module = sys.modules.get(SYSTEM_METRICS_MODULE)
    cls = getattr(module, "SystemMetricsInstrumentor", None)
    instance = getattr(cls, "_instance", None)
    if instance is None or not getattr(instance, "_is_instrumented_by_opentelemetry", False):
        return frozenset()
    names = set(getattr(instance, "_config", None) or ())
    if "process.open_file_descriptor.count" in names:  # the older name for the same count
        names.add("process.unix.file_descriptor.count")
    return frozenset(names)


Callback = Callable[[CallbackOptions], Iterable[Observation]]


class Binding:
    def __init__(self, probe: ProcessProbe, sampler: Sampler) -> None:
        self.probe = probe
        self.sampler = sampler
        self.active = True
        self.callbacks: list[Callback] = []

    def _guard(self, name: str, body: Callable[[], Iterable[Observation]], semconv: bool = False) -> Callback:
        def callback(_options: CallbackOptions) -> Iterable[Observation]:
            if not self.active or (semconv and name in system_metrics_names()):
                return []
            try:
                return list(body())
            except Exception:
                log_once(f"resources:callback:{name}", logging.ERROR,
                         "otel_hardening: collecting %s failed; it is skipped", name, exc_info=True)
                return []

        return callback

    # -- semantic-convention process and runtime metrics -------------------------------------------

    def _process(self, attr: str) -> Iterable[Observation]:
        value = getattr(self.probe.read(), attr)
        return [] if value is None else [Observation(value)]

    def _cpu_time(self) -> Iterable[Observation]:
        r = self.probe.read()
        return [Observation(v, {"cpu.mode": mode})
                for mode, v in (("user", r.cpu_user), ("system", r.cpu_system)) if v is not None]

    def _cpu_utilization(self) -> Iterable[Observation]:
        return [Observation(v, {"cpu.mode": m}) for m, v in self.probe.read().cpu_utilization.items()]

    @staticmethod
    def _gc(key: str) -> Callable[[], Iterable[Observation]]:
        def body() -> Iterable[Observation]:
            return [Observation(stats[key], {"cpython.gc.generation": gen})
                    for gen, stats in enumerate(gc.get_stats())]

        return body

    # -- hardening.* --------------------------------------------------------------------------------

    def _slow(self, attr: str) -> Iterable[Observation]:
        value = getattr(self.sampler.latest, attr)
        return [] if value is None else [Observation(value)]

    def _tasks(self) -> Iterable[Observation]:
        tasks = self.sampler.latest.tasks
        return [] if tasks is None else [Observation(n, {"thread.name": name}) for name, n in tasks.items()]

    def _fd_ratio(self) -> Iterable[Observation]:
        ratio = self.probe.read().fd_usage_ratio
        return [] if ratio is None else [Observation(ratio)]

    def _memory_limit(self) -> Iterable[Observation]:
        limit = self.sampler.memory_limit
        return [] if limit is None else [Observation(limit)]

    @staticmethod
    def _httpx_clients() -> Iterable[Observation]:
        from otel_hardening.http import clients

        return [Observation(clients.open_client_count())]

    def _suspected(self) -> Iterable[Observation]:
        verdicts = self.sampler.verdicts().items()
        return [Observation(int(suspected), {RESOURCE_ATTR: name}) for name, (suspected, _) in verdicts]

    def _growth(self, name: str) -> Callable[[], Iterable[Observation]]:
        return lambda: [Observation(self.sampler.verdicts()[name][1])]

    def register(self, meter: metrics.Meter) -> None:
        g = self._guard
        updown = meter.create_observable_up_down_counter
        counter = meter.create_observable_counter
        gauge = meter.create_observable_gauge
        specs: list[tuple[Callable[..., Any], str, str, str, Callback]] = [
            (updown, "process.memory.usage", "By", "The amount of physical memory in use (RSS).",
             g("process.memory.usage", lambda: self._process("rss"), True)),
            (updown, "process.memory.virtual", "By", "The amount of committed virtual memory.",
             g("process.memory.virtual", lambda: self._process("vms"), True)),
            (counter, "process.cpu.time", "s", "Total CPU seconds broken down by CPU mode.",
             g("process.cpu.time", self._cpu_time, True)),
            (gauge, "process.cpu.utilization", "1",
             "CPU time since the previous collection / elapsed time / CPUs available to the process.",
             g("process.cpu.utilization", self._cpu_utilization, True)),
            (updown, "process.thread.count", "{thread}", "Process threads count.",
             g("process.thread.count", lambda: self._process("threads"), True)),
            (updown, "process.unix.file_descriptor.count", "{file_descriptor}",
             "Number of UNIX file descriptors in use by the process.",
             g("process.unix.file_descriptor.count", lambda: self._process("fds"), True)),
            (counter, "cpython.gc.collections", "{collection}",
             "The number of times a generation was collected since interpreter start.",
             g("cpython.gc.collections", self._gc("collections"), True)),
            (counter, "cpython.gc.collected_objects", "{object}",
             "The total number of objects collected inside a generation since interpreter start.",
             g("cpython.gc.collected_objects", self._gc("collected"), True)),
            (counter, "cpython.gc.uncollectable_objects", "{object}",
             "The total number of uncollectable objects found in a generation since interpreter start.",
             g("cpython.gc.uncollectable_objects", self._gc("uncollectable"), True)),
            (updown, "hardening.process.memory.uss", "By",
             "Unique set size (memory freed if the process exited), as of the last sampler tick.",
             g("hardening.process.memory.uss", lambda: self._slow("uss"))),
            (updown, "hardening.process.memory.limit", "By",
             "cgroup memory limit of the process (absent when there is none).",
             g("hardening.process.memory.limit", self._memory_limit)),
            (gauge, "hardening.process.file_descriptor.usage", "1",
             "Open file descriptors / soft RLIMIT_NOFILE.",
             g("hardening.process.file_descriptor.usage", self._fd_ratio)),
            (updown, "hardening.process.socket.count", "{socket}",
             "Open sockets among the process's fds, as of the last sampler tick.",
             g("hardening.process.socket.count", lambda: self._slow("sockets"))),
            (updown, "hardening.asyncio.task.count", "{task}",
             "Unfinished asyncio tasks per running event loop, as of the last sampler tick.",
             g("hardening.asyncio.task.count", self._tasks)),
            (updown, "hardening.httpx.client.open", "{client}",
             "Hardened httpx clients alive and not closed.",
             g("hardening.httpx.client.open", self._httpx_clients)),
            (gauge, "hardening.resource.leak.suspected", "",
             "1 while the leak detector suspects the resource named by hardening.resource is leaking.",
             g("hardening.resource.leak.suspected", self._suspected)),
        ]
        for name, (metric, unit, description) in GROWTH_RATES.items():
            specs.append((gauge, metric, unit, description, g(metric, self._growth(name))))
        for create, name, unit, description, callback in specs:
            create(name, callbacks=[callback], unit=unit, description=description)
            self.callbacks.append(callback)


_bindings: list[tuple[object, Binding]] = []
_bindings_lock = threading.Lock()


def bind(meter_provider: metrics.MeterProvider | None, probe: ProcessProbe, sampler: Sampler) -> Binding:
    provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
    with _bindings_lock:
        for known, binding in _bindings:
            if known is provider:
                binding.probe, binding.sampler, binding.active = probe, sampler, True
                return binding
        binding = Binding(probe, sampler)
        binding.register(provider.get_meter(SCOPE, __version__))
        _bindings.append((provider, binding))
        return binding

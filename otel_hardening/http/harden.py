"""Hardening httpx clients: one client (``harden``) or every client built after ``install()``.

httpx has no public hook around one request, so this module is the one place that touches a client's
internals: it sets the instance attribute ``_send_single_request`` (send.py explains why there and not
around the transports) and gives the transports' pools the deadline (deadline.py). It never patches a
class: ``HTTPTransport.handle_request`` stays opentelemetry-instrumentation-httpx's to wrap, per class
or per client, so each attempt gets its CLIENT span.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import TYPE_CHECKING, TypeVar

import httpx
from opentelemetry import metrics, trace

from otel_hardening.config import BudgetPolicy, CircuitPolicy, HardeningConfig, RetryPolicy, SlowRequestPolicy
from otel_hardening.http import quality
from otel_hardening.http.clients import track_client
from otel_hardening.http.deadline import prepare_pool
from otel_hardening.http.engine import Engine
from otel_hardening.http.hooks import usable
from otel_hardening.http.one_span import quiet_inside
from otel_hardening.http.pools import track
from otel_hardening.http.registry import REGISTRY
from otel_hardening.http.send import AsyncHardenedSend, HardenedSend, hardened_send
from otel_hardening.http.telemetry import Telemetry

if TYPE_CHECKING:
    from otel_hardening.outbox import Outbox

ClientT = TypeVar("ClientT", httpx.Client, httpx.AsyncClient)

_lock = threading.Lock()
_default: tuple[HardeningConfig, Telemetry] | None = None


_telemetries: dict[tuple[object, object], Telemetry] = {}


def new_telemetry(tracer_provider: trace.TracerProvider | None,
                  meter_provider: metrics.MeterProvider | None) -> Telemetry:
    """The telemetry of one pair of providers, made once: clients sharing providers share circuits."""
    key = (tracer_provider, meter_provider)
    with _lock:
        telemetry = _telemetries.get(key)
        if telemetry is None:
            made = Telemetry(tracer_provider, meter_provider, series=lambda: REGISTRY.series(made))
            telemetry = _telemetries[key] = made
        return telemetry


def providers_of(telemetry: Telemetry) -> tuple[trace.TracerProvider | None, metrics.MeterProvider | None]:
    """The providers ``telemetry`` was made for (``new_telemetry``)."""
    with _lock:
        for (tracer_provider, meter_provider), made in _telemetries.items():
            if made is telemetry:
                return tracer_provider, meter_provider  # type: ignore[return-value]
    return None, None


def _installed_logger_provider() -> object:
    from otel_hardening.instrumentor import HardeningInstrumentor

    installation = HardeningInstrumentor._installation
    return None if installation is None else installation.engine.slow.logger_provider


def _defaults() -> tuple[HardeningConfig, Telemetry]:
    """What ``harden()`` starts from: the installed configuration and telemetry while ``install()``
    (or zero code) is active, else the environment's and the global providers', made once."""
    from otel_hardening.instrumentor import HardeningInstrumentor  # it imports this module

    installation = HardeningInstrumentor._installation
    if installation is not None:
        return installation.config, installation.engine.telemetry
    global _default
    if _default is None:
        config = HardeningConfig.from_env()
        if not REGISTRY.configured:  # install(config) may have set its own limits already
            REGISTRY.configure(config.max_upstreams, config.max_upstream_series)
        if not quality.configured:
            quality.configure(config.quality)
        _default = (config, new_telemetry(None, None))
    return _default


def harden(
    client: ClientT,
    *,
    retry: RetryPolicy | None = None,
    circuit: CircuitPolicy | None = None,
    budget: BudgetPolicy | None = None,
    slow: SlowRequestPolicy | None = None,
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
    logger_provider: object = None,
    outbox: Outbox | None = None,
) -> ClientT:
    """Harden ``client`` in place and return it. Policies and providers not given are the installed
    ones while ``install()`` is active, else the environment's and the global providers.

    Hardening a client again (one ``install()`` already hardened, say) replaces its policies.
    ``outbox``: writes that still fail for a retryable reason are stored and replayed (docs/outbox.md).
    ``slow``: when a call is logged as slow (``hardening.slow_request`` records, through
    ``logger_provider``, else the installed or global one).
    """
    if not isinstance(client, (httpx.Client, httpx.AsyncClient)):
        raise TypeError(f"harden() takes an httpx.Client or httpx.AsyncClient, got {type(client).__name__} "
                        f"{client!r:.80}; e.g. harden(httpx.Client(base_url=...))")
    for name, value, kind in (("retry", retry, RetryPolicy), ("circuit", circuit, CircuitPolicy),
                              ("budget", budget, BudgetPolicy), ("slow", slow, SlowRequestPolicy)):
        if value is not None and not isinstance(value, kind):
            raise TypeError(f"harden({name}=...) takes a {kind.__name__} or None, got {type(value).__name__}; "
                            f"e.g. {name}={kind.__name__}(...)")
    config, telemetry = _defaults()
    if tracer_provider is not None or meter_provider is not None:
        base_tracer, base_meter = providers_of(telemetry)
        telemetry = new_telemetry(base_tracer if tracer_provider is None else tracer_provider,
                                  base_meter if meter_provider is None else meter_provider)
    config = replace(config, retry=retry or config.retry, circuit=circuit or config.circuit,
                     budget=budget or config.budget, slow=slow or config.slow)
    if logger_provider is None:
        logger_provider = _installed_logger_provider()
    wrap_client(client, Engine(config.retry, config.circuit, config.budget, telemetry, slow=config.slow,
                               logger_provider=logger_provider))
    if outbox is not None:
        from otel_hardening.outbox._hook import attach

        attach(client, outbox)
    return client


def wrap_client(client: httpx.Client | httpx.AsyncClient, engine: Engine) -> None:
    """Harden the client's per-request step in place (see send.py); a hardened one gets the new engine.

    The transports stay the application's own; their connection pools get the deadline (deadline.py).
    """
    hardened_before = hardened_send(client)
    if hardened_before is not None:
        hardened_before.engine = engine
        track(client, engine.telemetry)
        return
    if not usable(client):  # a private hook is missing or changed: logged, counted, left as it was
        return
    for transport in (client._transport, *client._mounts.values()):
        if transport is not None:
            prepare_pool(transport)
            quiet_inside(transport)  # the app's own OTel transport: one CLIENT span per attempt
    hardened: HardenedSend | AsyncHardenedSend
    if isinstance(client, httpx.AsyncClient):
        hardened = AsyncHardenedSend(client, engine)
    else:
        hardened = HardenedSend(client, engine)
    hardened.previous = vars(client).get("_send_single_request")  # someone else's step runs per attempt
    client._send_single_request = hardened.__call__  # type: ignore[method-assign]
    engine.clients.add(client)
    track_client(client)
    track(client, engine.telemetry)


def unwrap_clients(engine: Engine) -> int:
    """Give every client still hardened by ``engine`` its own per-request step back; how many.

    A client hardened again since (``harden()`` after ``install()``) has another engine and stays
    hardened. Its transports' pools keep the deadline-aware wrappers (deadline.py): another hardened
    client may share the transport, and the wrappers do nothing outside a hardened attempt.
    """
    restored = 0
    for client in list(engine.clients):
        hardened = hardened_send(client)
        if hardened is not None and hardened.engine is engine:
            if hardened.previous is None:
                del client._send_single_request
            else:
                client._send_single_request = hardened.previous  # type: ignore[method-assign,assignment]
            restored += 1
    engine.clients.clear()
    return restored


def is_hardened(client: httpx.Client | httpx.AsyncClient) -> bool:
    return hardened_send(client) is not None

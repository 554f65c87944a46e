"""The OpenTelemetry instrumentor: what ``opentelemetry-instrument``, ``install()`` and
``uninstall()`` turn on and off.

Zero code: ``opentelemetry-instrument python app.py`` loads :class:`HardeningInstrumentor` through the
``opentelemetry_instrumentor`` entry point named ``hardening`` (so
``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=hardening`` turns it off). Configuration comes from the
``OTEL_PYTHON_HARDENING_*`` variables (see the README).

``_instrument`` never raises: an exception escaping one instrumentor aborts every other
auto-instrumentation, so failures are logged once and the app runs unhardened.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

import httpx
from opentelemetry import metrics, trace
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.utils import unwrap
from wrapt import wrap_function_wrapper

from otel_hardening._logging import log_once, logger
from otel_hardening.config import HardeningConfig
from otel_hardening.http import quality
from otel_hardening.http.engine import Engine
from otel_hardening.http.harden import new_telemetry, unwrap_clients, wrap_client
from otel_hardening.http.httpx_tracing import InstalledHttpxTracing
from otel_hardening.http.registry import REGISTRY

if TYPE_CHECKING:
    from otel_hardening.outbox import Outbox

_instruments = ("httpx >= 0.27",)


class _Installation:
    """What one ``instrument()`` turned on, so ``uninstrument()`` turns off exactly that."""

    def __init__(self, config: HardeningConfig, engine: Engine) -> None:
        self.config = config
        self.engine = engine
        self.httpx_tracing = InstalledHttpxTracing()
        self.started: list[Any] = []
        self.outbox: Outbox | None = None
        self.owns_outbox = False
        """The outbox came from ``config.outbox`` (``OTEL_PYTHON_HARDENING_OUTBOX``): uninstall closes it."""

    def after_init(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> None:
        wrapped(*args, **kwargs)
        if self.engine.active:
            try:
                wrap_client(instance, self.engine)
                if self.outbox is not None:
                    from otel_hardening.outbox._hook import attach

                    attach(instance, self.outbox, replays_through=False)
            except Exception:
                log_once("install:wrap", logging.ERROR,
                         "otel_hardening: could not harden an httpx client; it runs unhardened",
                         exc_info=True)


class HardeningInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Hardens every ``httpx.Client`` and ``httpx.AsyncClient`` created after it is instrumented.

    Keyword arguments of ``instrument()``: ``config`` (a :class:`HardeningConfig`, default from the
    environment), ``tracer_provider``, ``meter_provider``, ``logger_provider``, and
    ``instrument_httpx`` (also turn on opentelemetry-instrumentation-httpx when it is off, until the
    application instruments httpx itself: http/httpx_tracing.py; what ``install()`` passes) and
    ``outbox`` (an ``Outbox`` every hardened client defers its failed writes to; default: one on
    ``config.outbox``, if set).
    """

    _installation: _Installation | None = None

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _instrument(self, **kwargs: Any) -> None:
        try:
            self._install(**kwargs)
        except Exception:
            log_once("install", logging.ERROR,
                     "otel_hardening: could not install hardening; the application runs unhardened",
                     exc_info=True)

    def _install(self, **kwargs: Any) -> None:
        config: HardeningConfig = kwargs.get("config") or HardeningConfig.from_env()
        tracer_provider: trace.TracerProvider | None = kwargs.get("tracer_provider")
        meter_provider: metrics.MeterProvider | None = kwargs.get("meter_provider")
        telemetry = new_telemetry(tracer_provider, meter_provider)
        REGISTRY.configure(config.max_upstreams, config.max_upstream_series)
        quality.configure(config.quality)
        installation = _Installation(config, Engine(
            config.retry, config.circuit, config.budget, telemetry,
            slow=config.slow, logger_provider=kwargs.get("logger_provider")))
        HardeningInstrumentor._installation = installation
        _open_outbox(installation, kwargs)
        if kwargs.get("instrument_httpx") and config.instrument_httpx:
            installation.httpx_tracing.turn_on(tracer_provider, meter_provider)
        wrap_function_wrapper(httpx.Client, "__init__", installation.after_init)
        wrap_function_wrapper(httpx.AsyncClient, "__init__", installation.after_init)
        _start_components(installation, kwargs)
        logger.debug("otel_hardening: installed")

    def _uninstrument(self, **kwargs: Any) -> None:
        installation = HardeningInstrumentor._installation
        HardeningInstrumentor._installation = None
        try:
            unwrap(httpx.Client, "__init__")
            unwrap(httpx.AsyncClient, "__init__")
            if installation is None:
                return
            installation.engine.active = False
            unwrap_clients(installation.engine)  # every client it hardened gets its own step back
            for stop in reversed(installation.started):
                stop()
            if installation.owns_outbox and installation.outbox is not None:
                installation.outbox.close()
            installation.httpx_tracing.turn_off()  # only if still ours: the application may have taken it over
        except Exception:
            log_once("uninstall", logging.ERROR, "otel_hardening: uninstall failed", exc_info=True)


def _open_outbox(installation: _Installation, kwargs: dict[str, Any]) -> None:
    """The outbox every hardened client defers to: the one given, else one on ``config.outbox``.

    Zero code has no ``before_replay`` to sign replays again, so its outbox stores credentials with the
    requests (docs/outbox.md, *Turning it on without code*). A store that cannot be opened is logged
    and the app runs without an outbox: configuration never stops it from starting."""
    outbox = kwargs.get("outbox")
    store = installation.config.outbox
    if outbox is None and store is not None:
        from otel_hardening.outbox import Outbox, OutboxPolicy

        try:
            outbox = Outbox(store, policy=OutboxPolicy(strip_headers=frozenset()),
                            tracer_provider=kwargs.get("tracer_provider"),
                            meter_provider=kwargs.get("meter_provider"))
        except Exception as exc:  # StoreError, ConfigurationError, a missing redis package
            log_once("install:outbox", logging.ERROR, "otel_hardening: OTEL_PYTHON_HARDENING_OUTBOX=%s: the outbox "
                     "cannot be opened (%s); failed writes are not deferred", store or "on", exc)
            return
        installation.owns_outbox = True
    if outbox is not None:
        installation.outbox = outbox
        outbox.attach(None, installation.engine)  # replay what an earlier run left, before any client


def _start_components(installation: _Installation, kwargs: dict[str, Any]) -> None:
    """Resource tracking and health, each optional and each unable to break the other."""
    config = installation.config
    providers = {k: kwargs.get(k) for k in ("meter_provider", "logger_provider")}
    if config.resources.enabled:
        from otel_hardening import resources

        _start(installation, "resources", lambda: resources.start(config.resources, **providers),
               resources.stop)
    if config.health.enabled:
        from otel_hardening import health

        _start(installation, "health", lambda: health.start(config.health, **providers), health.stop)


def _start(installation: _Installation, name: str, start: Any, stop: Any) -> None:
    try:
        start()
    except Exception:
        log_once(f"start:{name}", logging.ERROR, "otel_hardening: could not start %s", name, exc_info=True)
        return
    installation.started.append(stop)

"""The opentelemetry-instrumentation-httpx that ``install()`` turns on, and the application's own calls.

``install()`` turns the global httpx instrumentation on when it is off, so that each attempt gets a
CLIENT span. That is a default, and the application's explicit choice wins over it:

- ``HTTPXClientInstrumentor().instrument(...)``: ours is turned off and the application's call runs
  with its own providers, hooks and header capture (``BaseInstrumentor.instrument`` would otherwise
  ignore it: "already instrumented"). The instrumentation is the application's from then on, and
  ``uninstall()`` leaves it on.
- ``HTTPXClientInstrumentor().uninstrument()``: it is off, and ``uninstall()`` does not touch it.
- ``HTTPXClientInstrumentor.instrument_client(client)`` while ours is on: the client's transports are
  quieted (one_span.py) before contrib wraps them, so its per-client span is the only one per attempt.

Why the public methods are wrapped: they are the only places where the application states its choice,
and OpenTelemetry has no hook for "someone else instruments this library". They are wrapped at the
class (with wrapt, as contrib wraps httpx) only while the global instrumentation is ours, and put back
as soon as it is not. Nothing here raises into the application: a failure is logged once, counted as
a bypass (``internal_error``), and the application's call runs as it would have without this module.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import httpx
from opentelemetry import metrics, trace
from wrapt import wrap_function_wrapper

from otel_hardening._logging import log_once
from otel_hardening.http import bypass
from otel_hardening.http.one_span import quiet_transports

_lock = threading.RLock()


class InstalledHttpxTracing:
    """install()'s share of opentelemetry-instrumentation-httpx: whether the global one is ours, and the
    wrappers on ``HTTPXClientInstrumentor`` that hand it to the application."""

    def __init__(self) -> None:
        self.owned = False
        """install() turned the global instrumentation on and the application has not taken it over."""
        self._wrapped: dict[str, tuple[object, object]] = {}
        """Method name -> (our wrapper, the class's own attribute or None when it was inherited)."""

    def turn_on(self, tracer_provider: trace.TracerProvider | None,
                meter_provider: metrics.MeterProvider | None) -> None:
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

        instrumentor = HTTPXClientInstrumentor()
        if instrumentor.is_instrumented_by_opentelemetry:
            return  # the application's (or zero code's): not ours to hand over or turn off
        instrumentor.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
        with _lock:
            self.owned = instrumentor.is_instrumented_by_opentelemetry  # False after a dependency conflict
            if self.owned:
                self._wrap(HTTPXClientInstrumentor)

    def turn_off(self) -> None:
        """uninstall(): our wrappers go, and the global instrumentation too while it is still ours."""
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

        with _lock:
            owned, self.owned = self.owned, False  # our wrappers pass the call below straight through
            self._unwrap(HTTPXClientInstrumentor)
            if owned:
                HTTPXClientInstrumentor().uninstrument()

    def _wrap(self, cls: type) -> None:
        for name, wrapper in (("instrument", self._app_instruments), ("uninstrument", self._app_uninstruments),
                              ("instrument_client", self._app_instruments_client)):
            own = vars(cls).get(name)
            try:
                wrap_function_wrapper(cls, name, wrapper)
            except Exception:
                _failed("wrap", "could not watch HTTPXClientInstrumentor's own calls; an application that "
                        "instruments httpx itself gets install()'s instrumentation (uninstall() turns it off)")
                return
            self._wrapped[name] = (vars(cls)[name], own)

    def _unwrap(self, cls: type) -> None:
        for name, (ours, own) in self._wrapped.items():
            if vars(cls).get(name) is not ours:
                continue  # wrapped again over ours since: ours stays, inert now that nothing is owned
            if own is None:
                delattr(cls, name)
            else:
                setattr(cls, name, own)
        self._wrapped.clear()

    def _hand_over(self, instance: object, turn_ours_off: bool) -> None:
        """The application instruments or uninstruments httpx itself: the instrumentation is no longer ours."""
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

        if type(instance) is not HTTPXClientInstrumentor:
            return  # a subclass is its own instrumentor (and singleton)
        with _lock:
            if not self.owned:
                return
            self.owned = False
            try:
                if turn_ours_off:
                    HTTPXClientInstrumentor().uninstrument()  # our wrapper passes it through: nothing owned
                self._unwrap(HTTPXClientInstrumentor)
            except Exception:
                self.owned = HTTPXClientInstrumentor().is_instrumented_by_opentelemetry
                _failed("hand_over", "could not hand opentelemetry-instrumentation-httpx over to the "
                        "application; its instrument() may be ignored (attempts keep install()'s spans)")

    def _app_instruments(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        self._hand_over(instance, turn_ours_off=True)
        return wrapped(*args, **kwargs)

    def _app_uninstruments(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        self._hand_over(instance, turn_ours_off=False)
        return wrapped(*args, **kwargs)

    def _app_instruments_client(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if self.owned:
            try:
                client = args[0] if args else kwargs.get("client")
                # an instrumented client is left alone by contrib (a warning), so by us too
                if (isinstance(client, (httpx.Client, httpx.AsyncClient))
                        and not getattr(client, "_is_instrumented_by_opentelemetry", False)):
                    quiet_transports(client)
            except Exception:
                _failed("instrument_client", "could not keep install()'s httpx instrumentation off a client "
                        "the application instruments itself; its attempts may get two CLIENT spans")
        return wrapped(*args, **kwargs)


def _failed(what: str, consequence: str) -> None:
    log_once(f"httpx_tracing:{what}", logging.ERROR, "otel_hardening: %s", consequence, exc_info=True)
    bypass.record(bypass.INTERNAL_ERROR, consequence)

"""One CLIENT span per attempt, also when the application traces a client itself.

opentelemetry-instrumentation-httpx traces in three ways: globally (``instrument()`` wraps
``HTTPTransport.handle_request`` for every instance; ``install()`` turns it on), per transport (the
application wraps httpx's transport in ``SyncOpenTelemetryTransport`` / ``AsyncOpenTelemetryTransport``,
as a client's ``transport=`` or in its ``mounts=``) and per client (``instrument_client(client)`` wraps
the ``handle_request`` of the client's transports at instance level). The global way together with
either of the others traces each attempt twice: the application's span starts and calls the httpx
transport, whose class-level wrapper starts a second one.

The application's span is the one it asked for (its hooks, its providers), so the transport under it
gets an instance-level ``handle_request`` that calls the class's own under OpenTelemetry's
``suppress_http_instrumentation()`` (:func:`quiet`): the global wrapper stays quiet for that one
call, and nothing else changes (the application's span has started and its propagation headers are
in the request by then). Without the global instrumentation the suppression changes nothing, so it
can stay for the transport's life, also after ``uninstall()``.
"""

from __future__ import annotations

import httpx
from opentelemetry.instrumentation.utils import suppress_http_instrumentation

_MARK = "_otel_hardening_one_span"


def _wrapped_by_opentelemetry(transport: object) -> httpx.BaseTransport | httpx.AsyncBaseTransport | None:
    """The httpx transport inside an OpenTelemetry transport, or None if ``transport`` is not one."""
    try:
        from opentelemetry.instrumentation.httpx import AsyncOpenTelemetryTransport, SyncOpenTelemetryTransport
    except ImportError:
        return None
    if not isinstance(transport, (SyncOpenTelemetryTransport, AsyncOpenTelemetryTransport)):
        return None
    # private to the contrib package (no accessor); if it ever goes, the only loss is this dedup
    inner = getattr(transport, "_transport", None)
    return inner if isinstance(inner, (httpx.BaseTransport, httpx.AsyncBaseTransport)) else None


def quiet_inside(transport: object) -> None:
    """If ``transport`` is an OpenTelemetry transport, keep global tracing off the one it wraps, once."""
    inner = _wrapped_by_opentelemetry(transport)
    if inner is not None:
        quiet(inner)


def quiet_transports(client: httpx.Client | httpx.AsyncClient) -> None:
    """Keep global tracing off every transport of ``client``: ``instrument_client`` is about to trace them."""
    for transport in (client._transport, *client._mounts.values()):
        if isinstance(transport, (httpx.BaseTransport, httpx.AsyncBaseTransport)):
            quiet(transport)


def quiet(transport: httpx.BaseTransport | httpx.AsyncBaseTransport) -> None:
    """Run ``transport``'s own step under ``suppress_http_instrumentation()`` from now on, once."""
    if _MARK in vars(transport):
        return
    # an instance-level step someone set before (instrument_client, a test double) keeps running
    if isinstance(transport, httpx.BaseTransport):
        sync_transport, previous = transport, vars(transport).get("handle_request")

        def handle_request(request: httpx.Request) -> httpx.Response:
            with suppress_http_instrumentation():
                if previous is not None:
                    return previous(request)  # type: ignore[no-any-return]
                return type(sync_transport).handle_request(sync_transport, request)

        sync_transport.handle_request = handle_request  # type: ignore[method-assign]
    else:
        async_transport, async_previous = transport, vars(transport).get("handle_async_request")

        async def handle_async_request(request: httpx.Request) -> httpx.Response:
            with suppress_http_instrumentation():
                if async_previous is not None:
                    return await async_previous(request)  # type: ignore[no-any-return]
                return await type(async_transport).handle_async_request(async_transport, request)

        async_transport.handle_async_request = handle_async_request  # type: ignore[method-assign]
    setattr(transport, _MARK, True)

"""The one place the outbox meets the request path: the hardened send of a client given an outbox.

A subclass of the hardened send, used only for clients hardened with ``outbox=``: every other client
keeps the plain hardened send and pays nothing for the outbox's existence. It wraps one logical call
(every attempt and wait of hardening), so deferral happens only after hardening's retries failed.
"""

from __future__ import annotations

import logging

import httpx

from otel_hardening._logging import log_once
from otel_hardening.http.send import AsyncHardenedSend, HardenedSend, hardened_send
from otel_hardening.outbox._outbox import EXTENSION, Outbox
from otel_hardening.outbox._policy import NEVER_DEFERRED


class OutboxSend(HardenedSend):
    __slots__ = ("outbox",)

    def __init__(self, client: httpx.Client, engine: object, outbox: Outbox) -> None:
        super().__init__(client, engine)  # type: ignore[arg-type]
        self.outbox = outbox

    def __call__(self, request: httpx.Request) -> httpx.Response:
        # reads (never deferred, and unmarked) skip the outbox entirely: they pay one lookup
        if request.method in NEVER_DEFERRED and EXTENSION not in request.extensions:
            return HardenedSend.__call__(self, request)
        return self.outbox.send(request, super().__call__)


class AsyncOutboxSend(AsyncHardenedSend):
    __slots__ = ("outbox",)

    def __init__(self, client: httpx.AsyncClient, engine: object, outbox: Outbox) -> None:
        super().__init__(client, engine)  # type: ignore[arg-type]
        self.outbox = outbox

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method in NEVER_DEFERRED and EXTENSION not in request.extensions:
            return await AsyncHardenedSend.__call__(self, request)
        return await self.outbox.asend(request, super().__call__)


def attach(client: httpx.Client | httpx.AsyncClient, outbox: Outbox, *, replays_through: bool = True) -> None:
    """Give a hardened client the outbox (``harden(client, outbox=...)``); ``replays_through``: the
    outbox may send its replays through this client (``install()`` says no: see ``Outbox.attach``)."""
    if not isinstance(outbox, Outbox):
        raise TypeError(f"harden(outbox=...) takes an otel_hardening.outbox.Outbox or None, got "
                        f"{type(outbox).__name__}; e.g. outbox=Outbox('/var/lib/app/outbox.sqlite3', ...)")
    current = hardened_send(client)
    if current is None:
        # harden() left the client as it was (its private hook changed: logged there); so is the outbox
        log_once("outbox:unhardened", logging.WARNING, "otel_hardening: a client could not be hardened, so "
                 "its failed writes are not deferred to the outbox %s", outbox.name)
        return
    if isinstance(current, (OutboxSend, AsyncOutboxSend)):
        current.outbox = outbox
    else:
        hooked: HardenedSend | AsyncHardenedSend
        if isinstance(client, httpx.AsyncClient):
            hooked = AsyncOutboxSend(client, current.engine, outbox)
        else:
            hooked = OutboxSend(client, current.engine, outbox)
        hooked.previous = current.previous
        client._send_single_request = hooked.__call__  # type: ignore[method-assign]
    outbox.attach(client if replays_through else None, current.engine)

"""The httpx clients this package hardened, for health: how many are alive and not closed."""

from __future__ import annotations

import weakref

import httpx

_clients: weakref.WeakSet[httpx.Client | httpx.AsyncClient] = weakref.WeakSet()


def track_client(client: httpx.Client | httpx.AsyncClient) -> None:
    _clients.add(client)


def open_client_count() -> int:
    """httpx clients hardened by this package that are alive and not closed."""
    return sum(1 for client in list(_clients) if not client.is_closed)

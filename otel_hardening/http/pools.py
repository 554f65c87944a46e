"""The connection pools of hardened clients, read when metrics are collected: nothing on the request path.

Every client ``harden()`` / ``install()`` hardens is remembered weakly with its telemetry (a dropped
client is forgotten with it; at most ``MAX_TRACKED_CLIENTS``). At collection time each telemetry
walks its open clients' httpcore pools (a pool shared by two clients counts once) and reports, per
upstream series (registry.py: a named upstream, or ``_other``):

- ``http.client.open_connections``: the pool's connections to it, ``active`` (handling a request or
  connecting) or ``idle`` (kept alive for the next one), per URL scheme;
- ``hardening.http.client.pool.waiting``: its requests waiting for a connection;
- ``hardening.http.client.pool.limit``: the ``max_connections`` / ``max_keepalive_connections`` of the
  pools that hold a connection or request for it, summed over pools (unlimited ones are left out).

A series exists while a pool holds a connection or a request for the upstream: after the client is
closed (or dropped) it has none. The connections are public (``pool.connections``,
``is_idle()``); the requests and limits are private names, checked before hardening (hooks.py).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpcore
import httpx
from opentelemetry.metrics import CallbackOptions, Meter, Observation

from otel_hardening._logging import log_once
from otel_hardening.http.deadline import find_pool
from otel_hardening.http.registry import REGISTRY
from otel_hardening.http.series import OVERFLOW

MAX_TRACKED_CLIENTS = 10_000
"""Clients whose pools are read; past it new ones are not (one warning), so a leak of clients cannot
make collection walk an ever-growing list (hardening.httpx.client.open shows such a leak)."""

_lock = threading.Lock()
_clients: weakref.WeakKeyDictionary[httpx.Client | httpx.AsyncClient, object] = weakref.WeakKeyDictionary()


def track(client: httpx.Client | httpx.AsyncClient, telemetry: object) -> None:
    """Read ``client``'s pools for ``telemetry`` from now on (hardening it again moves it)."""
    with _lock:
        if client in _clients or len(_clients) < MAX_TRACKED_CLIENTS:
            _clients[client] = telemetry
            return
    log_once("pools:full", logging.WARNING,
             "otel_hardening: more than %d hardened httpx clients alive; the pools of newer ones are not "
             "in the connection-pool metrics", MAX_TRACKED_CLIENTS)


def _pools(telemetry: object) -> Iterator[Any]:
    with _lock:
        clients = [c for c, t in _clients.items() if t is telemetry]
    seen: set[int] = set()
    for client in clients:
        if client.is_closed:
            continue
        for transport in (client._transport, *client._mounts.values()):
            pool = find_pool(transport) if transport is not None else None
            if isinstance(pool, (httpcore.ConnectionPool, httpcore.AsyncConnectionPool)) and id(pool) not in seen:
                seen.add(id(pool))
                yield pool


def _origin_of(connection: Any, candidates: Iterable[httpcore.Origin]) -> httpcore.Origin | None:
    # httpcore keeps a connection's origin private (_origin; _remote_origin behind a proxy). If a
    # release renames it, the public can_handle_request() finds it among the origins in play.
    for name in ("_origin", "_remote_origin"):
        origin = getattr(connection, name, None)
        if isinstance(origin, httpcore.Origin):
            return origin
    return next((o for o in candidates if connection.can_handle_request(o)), None)


@dataclass
class _Upstream:
    attrs: dict[str, Any]
    connections: dict[tuple[str, str], int] = field(default_factory=dict)
    """(scheme, active | idle) -> connections."""
    waiting: int = 0
    limits: dict[str, int] = field(default_factory=dict)
    pools: set[int] = field(default_factory=set)


class PoolReadings:
    """The pool instruments of one telemetry; one walk of the pools per collection."""

    def __init__(self, telemetry: object) -> None:
        self._telemetry = weakref.ref(telemetry)
        self._memo: tuple[float, list[_Upstream]] = (-1.0, [])

    def register(self, meter: Meter) -> None:
        meter.create_observable_up_down_counter(
            "http.client.open_connections", callbacks=[self._observe_connections], unit="{connection}",
            description="Connections of hardened clients' pools, by state (active: in use; idle: kept alive).")
        meter.create_observable_up_down_counter(
            "hardening.http.client.pool.waiting", callbacks=[self._observe_waiting], unit="{request}",
            description="Requests waiting for a connection of their client's pool.")
        meter.create_observable_up_down_counter(
            "hardening.http.client.pool.limit", callbacks=[self._observe_limits], unit="{connection}",
            description="max_connections and max_keepalive_connections of the pools serving the upstream.")

    def read(self, fresh: bool = False) -> list[_Upstream]:
        """Per upstream series: connections, waiting requests, limits (the first callback reads afresh)."""
        now = time.monotonic()
        if fresh or now - self._memo[0] > 1.0:
            telemetry = self._telemetry()
            try:
                self._memo = (now, _read(telemetry) if telemetry is not None else [])
            except Exception:  # a pool changed under us in a way the hook check did not foresee
                log_once("pools:read", logging.ERROR, "otel_hardening: reading the connection pools failed; "
                         "no pool metrics", exc_info=True)
                self._memo = (now, [])
        return self._memo[1]

    def _observe_connections(self, options: CallbackOptions) -> Iterable[Observation]:
        for upstream in self.read(fresh=True):
            for (scheme, state), n in upstream.connections.items():
                yield Observation(n, {**upstream.attrs, "url.scheme": scheme, "http.connection.state": state})

    def _observe_waiting(self, options: CallbackOptions) -> Iterable[Observation]:
        for upstream in self.read():
            yield Observation(upstream.waiting, upstream.attrs)

    def _observe_limits(self, options: CallbackOptions) -> Iterable[Observation]:
        for upstream in self.read():
            for kind, n in upstream.limits.items():
                yield Observation(n, {**upstream.attrs, "hardening.pool.limit": kind})


def _read(telemetry: object) -> list[_Upstream]:
    out: dict[str, _Upstream] = {}

    def upstream_of(origin: httpcore.Origin, pool: Any) -> _Upstream:
        scheme, host = origin.scheme.decode("ascii"), origin.host.decode("ascii")
        port = origin.port or (443 if scheme == "https" else 80)
        shown = f"[{host}]" if ":" in host else host
        name = f"{scheme}://{shown}:{port}"
        series = name if REGISTRY.is_named(name) else OVERFLOW
        found = out.get(series)
        if found is None:
            base = {"server.address": host, "server.port": port} if series == name else \
                {"server.address": OVERFLOW, "server.port": 0}
            found = out[series] = _Upstream(base)
        if id(pool) not in found.pools:  # a pool's limits count once per upstream it serves
            found.pools.add(id(pool))
            for kind, limit in (("max_connections", pool._max_connections),
                                ("max_keepalive_connections", pool._max_keepalive_connections)):
                if limit < sys.maxsize:
                    found.limits[kind] = found.limits.get(kind, 0) + limit
        return found

    for pool in _pools(telemetry):
        requests = list(pool._requests)
        origins = [r.request.url.origin for r in requests]
        for request in requests:
            if request.is_queued():
                upstream_of(request.request.url.origin, pool).waiting += 1
        for connection in pool.connections:
            if connection.is_closed():
                continue
            origin = _origin_of(connection, origins)
            if origin is None:
                continue
            upstream = upstream_of(origin, pool)
            key = (origin.scheme.decode("ascii"), "idle" if connection.is_idle() else "active")
            upstream.connections[key] = upstream.connections.get(key, 0) + 1
    return list(out.values())

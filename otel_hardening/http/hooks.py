"""The private names of httpx, httpcore and pybreaker the layer relies on, checked before it patches.

httpx has no public hook around one request and httpcore none under its pool, so the layer sets a
few private attributes (send.py, deadline.py explain why each one). A private name can disappear or
change in any release: an assignment to a renamed ``_send_single_request`` still succeeds, httpx
never calls it, and the client would look hardened while nothing runs. So before a client is
hardened every name is checked to exist with the shape the layer uses (a callable of the right
arity, an attribute of the right type, still referenced by the httpx code that calls it). If one is
missing, the client is left untouched: one log line names the package, its version and the name,
``hardening.bypassed{reason="hook_missing"}`` counts the client, and ``hardening:self`` is degraded.

pyproject.toml caps httpx and httpcore below their next minor release, and the floors run of
``./run test`` proves the lowest versions allowed, so this check is the last line, not the first.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterator
from importlib.metadata import PackageNotFoundError, version

import httpcore
import httpx
import pybreaker

from otel_hardening._logging import log_once
from otel_hardening.http import bypass


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "(version unknown)"


def _arity(function: object) -> int | None:
    """Positional parameters of ``function`` (self included), or None if it is not a plain function."""
    if not inspect.isfunction(function):
        return None
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
               for p in inspect.signature(function).parameters.values())


def _called_by(cls: type, name: str) -> bool:
    """Some method of ``cls`` still reads ``self.<name>``: httpx calls the step the layer replaces."""
    return any(name in getattr(getattr(member, "__code__", None), "co_names", ())
               for member in vars(cls).values())


Problem = tuple[str, str]
"""(package, what is missing or changed)."""


def _send_step(client: httpx.Client | httpx.AsyncClient) -> Iterator[Problem]:
    # Client._send_single_request(self, request) sends one request (one redirect hop) through the
    # transport of its URL: the only per-request step of httpx, and the one the layer replaces per
    # instance (send.py). No public event hook can retry or refuse a request.
    cls = httpx.AsyncClient if isinstance(client, httpx.AsyncClient) else httpx.Client
    step = vars(cls).get("_send_single_request")
    label = f"{cls.__name__}._send_single_request"
    if _arity(step) != 2:
        yield "httpx", f"{label} (a method taking the request)"
    elif isinstance(client, httpx.AsyncClient) != inspect.iscoroutinefunction(step):
        yield "httpx", f"{label} (async for AsyncClient, sync for Client)"
    elif not _called_by(cls, "_send_single_request"):
        yield "httpx", f"{label} (no longer called by {cls.__name__})"


def _transports(client: httpx.Client | httpx.AsyncClient) -> Iterator[Problem | object]:
    # client._transport and client._mounts: the transports the client was built with. httpx has no
    # public accessor (mounts= and transport= are constructor arguments only); the layer reads them
    # once, to prepare their pools.
    base = httpx.AsyncBaseTransport if isinstance(client, httpx.AsyncClient) else httpx.BaseTransport
    attrs = vars(client)
    if not isinstance(attrs.get("_transport"), base):
        yield "httpx", f"{type(client).__name__}._transport (the client's {base.__name__})"
        return
    mounts = attrs.get("_mounts")
    if not isinstance(mounts, dict):
        yield "httpx", f"{type(client).__name__}._mounts (a dict of URL patterns to transports)"
        return
    yield attrs["_transport"]
    yield from (t for t in mounts.values() if t is not None)


def _pool(transport: object) -> Iterator[Problem]:
    # HTTPTransport._pool is httpcore's connection pool, and pool._network_backend the object that
    # opens its sockets: the only place where every socket operation of an attempt can be cut to the
    # retry deadline (deadline.py). httpcore's NetworkBackend interface itself is public.
    for _ in range(4):  # an OpenTelemetry transport wraps httpx's own in ._transport
        if isinstance(transport, (httpx.HTTPTransport, httpx.AsyncHTTPTransport)):
            break
        transport = getattr(transport, "_transport", None)
    else:
        return
    if not isinstance(transport, (httpx.HTTPTransport, httpx.AsyncHTTPTransport)):
        return  # a mock or custom transport: no pool to prepare, nothing private used
    pool = getattr(transport, "_pool", None)
    if not isinstance(pool, (httpcore.ConnectionPool, httpcore.AsyncConnectionPool)):
        yield "httpx", f"{type(transport).__name__}._pool (an httpcore connection pool)"
        return
    backend = vars(pool).get("_network_backend")
    if not isinstance(backend, (httpcore.NetworkBackend, httpcore.AsyncNetworkBackend)):
        yield "httpcore", f"{type(pool).__name__}._network_backend (an httpcore NetworkBackend)"
    # The pool metrics (pools.py) and the time_in_queue check (deadline.py) read what httpcore has no
    # public accessor for: pool._requests, its requests in flight or waiting for a connection (a
    # PoolRequest list; pool.connections is public, the queue is not), and the limits the pool was
    # built with (httpx.Limits is not kept by the transport), as httpcore normalised them.
    if not isinstance(vars(pool).get("_requests"), list):
        yield "httpcore", f"{type(pool).__name__}._requests (the list of requests in the pool)"
    for name in ("_max_connections", "_max_keepalive_connections"):
        if not isinstance(vars(pool).get(name), int):
            yield "httpcore", f"{type(pool).__name__}.{name} (an int)"


def _breaker() -> Iterator[Problem]:
    # circuit.py drives pybreaker's state machine without CircuitBreaker.call(), which holds one lock
    # across the whole wrapped call (one request at a time per upstream): the outcome of an attempt
    # is fed to the current state's _handle_success() / _handle_error(exc, reraise), the state as
    # this process last saw it is _state (no storage round trip), and the open time is read from
    # _state_storage.opened_at (the breaker has no public accessor for either).
    state = pybreaker.CircuitBreakerState
    if _arity(getattr(state, "_handle_success", None)) != 1:
        yield "pybreaker", "CircuitBreakerState._handle_success()"
    if _arity(getattr(state, "_handle_error", None)) != 3:
        yield "pybreaker", "CircuitBreakerState._handle_error(exc, reraise)"
    breaker = pybreaker.CircuitBreaker()
    if not hasattr(vars(breaker).get("_state"), "name"):
        yield "pybreaker", "CircuitBreaker._state (the state object, with .name)"
    if not isinstance(vars(breaker).get("_state_storage"), pybreaker.CircuitBreakerStorage):
        yield "pybreaker", "CircuitBreaker._state_storage (its CircuitBreakerStorage)"


def problems(client: httpx.Client | httpx.AsyncClient) -> list[Problem]:
    """Every private name the layer would use for ``client`` that is missing or changed."""
    found: list[Problem] = list(_send_step(client))
    for item in _transports(client):
        if isinstance(item, tuple):
            found.append(item)
        else:
            found.extend(_pool(item))
    found.extend(_breaker())
    return found


def usable(client: httpx.Client | httpx.AsyncClient,
           check: Callable[[httpx.Client | httpx.AsyncClient], list[Problem]] = problems) -> bool:
    """True if ``client`` can be hardened; else log once per missing name, count the bypass, False.

    Never raises: a check that itself fails counts as a missing hook (the client stays unhardened).
    """
    try:
        found = check(client)
    except Exception as exc:
        found = [("otel_hardening", f"the hook check itself ({type(exc).__name__}: {exc})")]
    if not found:
        return True
    for package, name in found:
        log_once(f"hook:{package}:{name}", logging.ERROR,
                 "otel_hardening: %s %s has no usable %s; httpx clients are left unhardened",
                 package, _version(package), name)
    package, name = found[0]
    bypass.record(bypass.HOOK_MISSING, f"{package} {_version(package)}: {name}")
    return False

"""Errors the outbox raises into the application. All are ``httpx.TransportError`` subclasses (as
``CircuitOpenError`` is), so ``except httpx.HTTPError`` keeps catching whatever a hardened call raises."""

from __future__ import annotations

import httpx


class OutboxError(httpx.TransportError):
    """Base of the outbox's errors."""


class RequestDeferred(OutboxError):
    """The request failed for a retryable reason after hardening's retries and is now stored: it will
    be sent again when its upstream recovers. Not a success: the upstream has not applied it yet.

    ``id`` names the stored entry (``otel-hardening outbox show ID``); ``idempotency_key`` is the
    ``Idempotency-Key`` header every replay carries; ``reason`` is why the call failed (``circuit_open``,
    ``ConnectError``, ``503``, ...). The original failure is ``__cause__`` (or ``response`` for a
    429/503 answer, already closed).
    """

    def __init__(self, id: str, upstream: str, reason: str, idempotency_key: str, *,
                 request: httpx.Request | None = None, response: httpx.Response | None = None) -> None:
        super().__init__(f"request to {upstream} deferred to the outbox as {id} ({reason}); it will be "
                         "replayed when the upstream recovers", request=request)
        self.id = id
        self.upstream = upstream
        self.reason = reason
        self.idempotency_key = idempotency_key
        self.response = response


class OutboxRefused(OutboxError):
    """A deferrable request failed and could not be stored: ``reason`` says why (``full``: the store's
    count or byte limit; ``store_error``: the file or Redis failed). Nothing stored before is lost.
    The call's own failure is ``__cause__`` (or ``response``)."""

    def __init__(self, reason: str, detail: str, *, request: httpx.Request | None = None,
                 response: httpx.Response | None = None) -> None:
        super().__init__(f"request not deferred ({reason}): {detail}", request=request)
        self.reason = reason
        self.detail = detail
        self.response = response


class StoreError(Exception):
    """The store cannot do what was asked; the message names the store and the cause, never a secret."""


class StoreFull(StoreError):
    """The store is at its count or byte limit."""


class ConfigurationError(ValueError):
    """An outbox setting that cannot work; the message names it, the value and what is accepted."""

"""A durable outbox: writes that fail for a retryable reason are stored and replayed when their
upstream recovers, in order, each with an ``Idempotency-Key``. See docs/outbox.md.

>>> outbox = Outbox("/var/lib/myapp/outbox.sqlite3", before_replay=sign)   # or "redis://..."
>>> client = harden(httpx.Client(), outbox=outbox)
>>> try:
...     client.post("https://partner/api/orders", json=order)
... except RequestDeferred as deferred:
...     log.info("order queued as %s", deferred.id)       # sent later, exactly once in effect
"""

from __future__ import annotations

from otel_hardening.outbox._errors import (
    ConfigurationError,
    OutboxError,
    OutboxRefused,
    RequestDeferred,
    StoreError,
    StoreFull,
)
from otel_hardening.outbox._model import Entry, Stats, Store
from otel_hardening.outbox._outbox import EXTENSION, IDEMPOTENCY_KEY, Outbox
from otel_hardening.outbox._policy import OutboxPolicy
from otel_hardening.outbox._stores import open_store

__all__ = [
    "EXTENSION",
    "IDEMPOTENCY_KEY",
    "ConfigurationError",
    "Entry",
    "Outbox",
    "OutboxError",
    "OutboxPolicy",
    "OutboxRefused",
    "RequestDeferred",
    "Stats",
    "Store",
    "StoreError",
    "StoreFull",
    "open_store",
]

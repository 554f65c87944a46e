"""A durable outbox for writes that fail for a retryable reason (see docs/outbox.md): the stores."""

from __future__ import annotations

from otel_hardening.outbox._errors import StoreError, StoreFull
from otel_hardening.outbox._model import Entry, Stats, Store
from otel_hardening.outbox._stores import open_store

__all__ = ["Entry", "Stats", "Store", "StoreError", "StoreFull", "open_store"]

"""What is stored: one entry per deferred request, and the interface both stores implement."""

from __future__ import annotations

import abc
import json
import os
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

Headers = tuple[tuple[str, str], ...]


_last_ns = 0
_id_lock = threading.Lock()


def new_id() -> str:
    """Unique across processes and ordered by time (strictly, within a process): 16 hex digits of
    nanoseconds, then 8 random."""
    global _last_ns
    with _id_lock:
        _last_ns = max(time.time_ns(), _last_ns + 1)
        ns = _last_ns
    return f"{ns:016x}{secrets.token_hex(4)}"


@dataclass(frozen=True)
class Entry:
    """One deferred request. ``body`` and ``headers`` are the request's own: never shown or logged."""

    id: str
    upstream: str
    """``scheme://host:port``, the circuit's name."""
    method: str
    url: str
    headers: Headers
    body: bytes
    created: float
    """Wall-clock time it was deferred."""
    attempts: int = 0
    """Replays that reached the upstream and failed."""
    next_at: float = 0.0
    """Wall-clock time before which it is not replayed (the backoff schedule)."""
    last_error: str = ""
    trace_id: str = ""
    """The deferred request's trace and span (hex): each replay's span links to it."""
    span_id: str = ""
    dead_reason: str = ""
    """Why it was dead-lettered; empty while pending."""
    extra: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def size(self) -> int:
        """Bytes it counts against the store's byte limit."""
        return len(self.body) + len(self.url) + sum(len(k) + len(v) for k, v in self.headers)

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)

    def record(self) -> str:
        """Everything but the body and the bookkeeping, as JSON."""
        return json.dumps({"method": self.method, "url": self.url, "headers": [list(h) for h in self.headers],
                           "trace_id": self.trace_id, "span_id": self.span_id}, separators=(",", ":"))

    @classmethod
    def from_record(cls, id: str, upstream: str, record: str | bytes, body: bytes, created: float,
                    attempts: int, next_at: float, last_error: str, dead_reason: str) -> Entry:
        r = json.loads(record)
        return cls(id, upstream, r["method"], r["url"], tuple((k, v) for k, v in r["headers"]), body, created,
                   attempts, next_at, last_error, r.get("trace_id", ""), r.get("span_id", ""), dead_reason)

    def failed(self, error: str, next_at: float) -> Entry:
        return replace(self, attempts=self.attempts + 1, last_error=error, next_at=next_at)


@dataclass(frozen=True)
class Stats:
    pending: int
    pending_bytes: int
    oldest_created: float | None
    """Wall-clock creation time of the oldest pending entry."""
    dead: int
    dead_bytes: int

    def oldest_age(self, now: float | None = None) -> float:
        if self.oldest_created is None:
            return 0.0
        return max(0.0, (time.time() if now is None else now) - self.oldest_created)


CONSUMER = f"{os.uname().nodename}:{os.getpid()}:{secrets.token_hex(3)}"


class Store(abc.ABC):
    """Durable, bounded storage of entries, shared by the processes that open the same location.

    Entries of one upstream form a queue in insertion order. ``claim`` hands out the head of a queue
    to one consumer for ``visibility`` seconds; a consumer that dies without ``ack`` / ``release`` /
    ``bury`` loses the claim when it expires, and the entries are handed out again (the
    ``Idempotency-Key`` makes the second delivery harmless).
    """

    location: str
    """Where it lives, for messages: a path or a Redis URL without its password."""
    max_entries: int
    max_bytes: int

    @abc.abstractmethod
    def put(self, entry: Entry) -> None:
        """Store durably (fsynced / acknowledged) or raise StoreFull / StoreError."""

    @abc.abstractmethod
    def claim(self, upstream: str, limit: int, visibility: float, *, consumer: str = CONSUMER,
              ignore_schedule: bool = False) -> list[Entry]:
        """Up to ``limit`` entries from the head of ``upstream``'s queue, in order; none if the head is
        claimed by someone else or (unless ``ignore_schedule``) not due yet."""

    @abc.abstractmethod
    def ack(self, entry: Entry, consumer: str = CONSUMER) -> None:
        """Delivered: remove it."""

    @abc.abstractmethod
    def release(self, entry: Entry, consumer: str = CONSUMER) -> None:
        """Not delivered: store its new ``attempts`` / ``next_at`` / ``last_error`` and drop the claim."""

    @abc.abstractmethod
    def bury(self, entry: Entry, reason: str, consumer: str | None = CONSUMER) -> None:
        """Move it to the dead letters with ``reason``."""

    @abc.abstractmethod
    def upstreams(self) -> list[str]:
        """Upstreams with pending entries."""

    @abc.abstractmethod
    def stats(self) -> Stats: ...

    @abc.abstractmethod
    def entries(self, *, dead: bool, limit: int = 100) -> list[Entry]:
        """Pending (or dead) entries, oldest first."""

    @abc.abstractmethod
    def get(self, id: str) -> Entry | None: ...

    @abc.abstractmethod
    def retry_dead(self, ids: Sequence[str] | None = None) -> int:
        """Move dead letters (all, or those named) back to the end of their queues, attempts reset."""

    @abc.abstractmethod
    def reschedule(self, ids: Sequence[str] | None = None) -> int:
        """Clear the backoff of pending entries (all, or those named): due at the next replay round."""

    @abc.abstractmethod
    def purge(self, ids: Sequence[str] | None = None, *, dead: bool = True) -> int:
        """Delete the entries named, or every dead letter (``dead``) / every entry (not ``dead``)."""

    def finish(self, upstream: str, consumer: str = CONSUMER) -> None:  # noqa: B027 (optional)
        """The consumer stops replaying ``upstream`` for now (others may take it over at once)."""

    def after_fork(self) -> None:  # noqa: B027 (optional)
        """Drop connections inherited from the parent process."""

    def close(self) -> None:  # noqa: B027 (optional)
        """Release connections; the data stays."""

"""The outbox's settings, each default explained. Errors name the setting, the value and what works."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from otel_hardening.outbox._errors import ConfigurationError

NEVER_DEFERRED = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
"""Reads are never stored: a deferred read has no one waiting for its answer."""
DEFAULT_STRIP = frozenset({"authorization", "proxy-authorization", "cookie"})
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def default_name() -> str:
    """The app's name: ``OTEL_SERVICE_NAME``, else the script's; the store file and Redis keys use it."""
    raw = os.environ.get("OTEL_SERVICE_NAME", "").strip()
    if not raw:
        import sys

        raw = Path(sys.argv[0]).stem if sys.argv and sys.argv[0] not in ("", "-c") else "app"
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", raw)[:64]
    return name or "app"


def default_path(name: str) -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "otel-hardening" / f"{name}.outbox.sqlite3"


@dataclass(frozen=True)
class OutboxPolicy:
    """When a request is stored, how the store is bounded and how replays are paced."""

    defer_all: bool = True
    """Every POST/PUT/PATCH/DELETE of a client given an outbox may be deferred; a request opts out
    with ``extensions={"outbox": False}``. With False only requests marked ``{"outbox": True}`` are."""
    defer_statuses: frozenset[int] = frozenset({429, 503})
    """Answers after which a write is deferred: the upstream said "not now", not "no"."""
    max_body: int = 1024 * 1024
    """Largest body stored (bytes); a larger request fails as it would without an outbox."""
    max_entries: int = 10_000
    """Entries stored at most (dead letters included); when full, new deferrals are refused."""
    max_bytes: int = 64 * 1024 * 1024
    """Bytes stored at most (bodies, URLs, headers); when full, new deferrals are refused."""
    max_replays: int = 10
    """Failed replays after which an entry is dead-lettered (with backoff, ~half an hour of trying)."""
    max_age: float = 86_400.0
    """Seconds after which a pending entry is dead-lettered unsent: a day-old write is a decision for
    a person (``otel-hardening outbox retry-dead``), not for a timer."""
    concurrency: int = 1
    """Replays in flight per upstream. 1 keeps strict order; more only overlaps the sends of
    consecutive entries (each still starts in order)."""
    backoff_initial: float = 1.0
    """Seconds before the first re-replay of a failed entry; doubles per failure (full jitter)."""
    backoff_max: float = 300.0
    """Longest wait between replays of one entry, seconds."""
    poll: float = 5.0
    """Seconds between looks at the store when nothing woke the replayer (another process's entries)."""
    visibility: float = 60.0
    """Seconds a claimed entry stays claimed: a process killed mid-replay loses its claim after this."""
    backlog_age_degraded: float = 600.0
    """Health ``outbox:backlog`` is degraded when the oldest pending entry is older than this."""
    strip_headers: frozenset[str] = field(default_factory=lambda: DEFAULT_STRIP)
    """Headers never stored (credentials; names case-insensitive). Then ``before_replay`` must re-sign."""

    def __post_init__(self) -> None:
        for name in ("max_body", "max_entries", "max_bytes", "max_replays", "concurrency"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(f"OutboxPolicy.{name}={value!r}: accepted a whole number >= 1")
        for name in ("max_age", "backoff_initial", "backoff_max", "poll", "visibility", "backlog_age_degraded"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 10 ** 9:
                raise ConfigurationError(f"OutboxPolicy.{name}={value!r}: accepted a number of seconds > 0")
        statuses = self.defer_statuses
        if not isinstance(statuses, (set, frozenset)) or not all(
                isinstance(c, int) and 400 <= c <= 599 for c in statuses):
            raise ConfigurationError(f"OutboxPolicy.defer_statuses={statuses!r}: accepted a set of 4xx/5xx "
                                     "status codes, e.g. frozenset({429, 503})")
        strip = self.strip_headers
        if isinstance(strip, str) or not all(isinstance(h, str) for h in strip):
            raise ConfigurationError(f"OutboxPolicy.strip_headers={strip!r}: accepted a set of header names, "
                                     "e.g. {'authorization'}, or () to store every header")
        object.__setattr__(self, "strip_headers", frozenset(h.lower() for h in strip))
        if not isinstance(self.defer_all, bool):
            raise ConfigurationError(f"OutboxPolicy.defer_all={self.defer_all!r}: accepted True or False")


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigurationError(f"Outbox(name={name!r}): accepted 1-64 letters, digits, '_', '.' or '-'")
    return name

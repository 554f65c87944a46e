"""The package logger and the "log once" rule: instrumentation degrades, it never floods."""

from __future__ import annotations

import logging
import threading

logger = logging.getLogger("otel_hardening")

_seen: set[str] = set()
_seen_lock = threading.Lock()


def log_once(key: str, level: int, msg: str, *args: object, exc_info: bool = False) -> None:
    """Log ``msg`` the first time ``key`` is seen in this process, then stay quiet.

    A broken collector, a Redis outage or a bad setting would otherwise log on every request.
    """
    with _seen_lock:
        if key in _seen:
            return
        _seen.add(key)
    logger.log(level, msg, *args, exc_info=exc_info)


def forget(key: str) -> None:
    """Allow ``key`` to be logged again (after the condition it reported has cleared)."""
    with _seen_lock:
        _seen.discard(key)

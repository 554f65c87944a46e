"""The demo's memory leak: a response cache that is filled and never evicted, the most common kind.

The tracemalloc hunt must name the ``append`` line below; the view checks that it did.
"""

from __future__ import annotations

import threading
import time


class ResponseCache:
    """Grows by ``rate`` bytes a second while :meth:`leak` runs; :meth:`clear` is the fix."""

    def __init__(self) -> None:
        self._entries: list[bytes] = []
        self._lock = threading.Lock()

    def remember(self, size: int) -> None:
        # b"x" * n writes every byte, so RSS grows (bytes(n) is calloc'd zeros that may stay unmapped)
        entry = b"x" * size
        with self._lock:
            self._entries.append(entry)

    def leak(self, rate: float, stop: threading.Event, tick: float = 0.05) -> None:
        """Call from a thread: remember ``rate`` bytes a second, in one entry every ``tick`` seconds,
        until ``stop``. Each entry covers the time since the last one, so a loaded machine that wakes
        the thread late still leaks at ``rate`` (the detector's threshold is a share of it)."""
        last = time.monotonic()
        while not stop.wait(tick):
            now = time.monotonic()
            self.remember(max(1, int(rate * (now - last))))
            last = now

    @property
    def size(self) -> int:
        with self._lock:
            return sum(len(e) for e in self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

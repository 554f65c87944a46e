"""A count that request threads add to without taking a lock."""

from __future__ import annotations

import itertools
import threading


class ReadableCount(itertools.count):  # type: ignore[type-arg]
    """An ``itertools.count`` whose total can be read.

    Threads count with ``next(c)``: one C call, atomic, about a tenth of a ``with lock:`` block, which
    matters on a path every request takes (the retry budget's deposit, a first-time success). Reading
    takes a number from the count too, so reads are counted and left out of the total.
    """

    __slots__ = ("_lock", "_reads")

    def __init__(self) -> None:
        self._reads = 0
        self._lock = threading.Lock()

    def total(self) -> int:
        """How many times ``next()`` counted (reads excluded)."""
        with self._lock:
            total: int = next(self) - self._reads
            self._reads += 1
            return total

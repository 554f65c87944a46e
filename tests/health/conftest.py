from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from otel_hardening import health


class FakeClock:
    """Monotonic seconds that only move when the test says so."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(autouse=True)
def _health_stopped() -> Iterator[None]:
    health.stop()
    yield
    health.stop()


@dataclass(frozen=True)
class Snap:
    """An upstream snapshot as the health model reads it (the fields of registry.UpstreamSnapshot)."""

    name: str
    host: str
    circuit_state: str = "closed"
    calls: int = 0
    attempts: int = 0
    retries: int = 0
    failures: int = 0
    rejected: int = 0

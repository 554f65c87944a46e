"""Health sources that optional parts of the package register when they are used (the outbox), so the
monitor need not import them. Each is ``components(now) -> list[ComponentStatus]`` and must not raise
(the monitor reports a failing source as degraded anyway)."""

from __future__ import annotations

from collections.abc import Callable

from otel_hardening.health._model import ComponentStatus

Source = Callable[[float], list[ComponentStatus]]
SOURCES: dict[str, Source] = {}


def add(name: str, components: Source) -> None:
    """Evaluate ``components`` with every report from now on (again under one ``name``: replaced)."""
    SOURCES[name] = components

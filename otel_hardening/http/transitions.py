"""Who hears of a circuit's state changes as they happen (health re-evaluates at once; the outbox replays)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from otel_hardening._logging import logger

TransitionListener = Callable[[str, str, str], None]
_transition_listeners: list[TransitionListener] = []


def add_transition_listener(listener: TransitionListener) -> Callable[[], None]:
    """Call ``listener(upstream_name, old_state, new_state)`` after every circuit transition (health
    re-evaluates at once). It runs on the requesting thread, possibly under the circuit's lock: it
    must be quick and must not call into the circuit. Returns a function that removes it."""
    _transition_listeners.append(listener)

    def remove() -> None:
        with contextlib.suppress(ValueError):
            _transition_listeners.remove(listener)

    return remove


def notify_transition(name: str, old: str, new: str) -> None:
    for listener in tuple(_transition_listeners):
        try:
            listener(name, old, new)
        except Exception:  # a listener never breaks the request that caused the transition
            logger.debug("otel_hardening: circuit transition listener failed", exc_info=True)

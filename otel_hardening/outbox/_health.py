"""The outbox's health: ``outbox:backlog`` (degraded while the oldest waiting request is older than
``policy.backlog_age_degraded``) and ``outbox:dead_letters`` (degraded while any exist).

A backlog is the outbox doing its job during an outage, so it is never critical: the upstream's own
circuit component says how bad the outage is. Dead letters need a person, hence degraded until purged
or retried. With several outboxes in one process each is its own component, ``outbox:<name>``.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

from otel_hardening.health._model import ComponentStatus, Status

if TYPE_CHECKING:
    from otel_hardening.outbox._outbox import Outbox

_live: weakref.WeakSet[Outbox] = weakref.WeakSet()


def register(outbox: Outbox) -> None:
    from otel_hardening.health import _extra

    _extra.add("outbox", components)
    _live.add(outbox)


def unregister(outbox: Outbox) -> None:
    _live.discard(outbox)


def components(now: float) -> list[ComponentStatus]:
    """Every live outbox's components (the health monitor's ``outbox`` source)."""
    outboxes = sorted(_live, key=lambda o: o.name)
    out: list[ComponentStatus] = []
    for outbox in outboxes:
        out.extend(outbox_components(outbox, "outbox" if len(outboxes) == 1 else f"outbox:{outbox.name}"))
    return out


def outbox_components(outbox: Outbox, component: str) -> list[ComponentStatus]:
    stats = outbox.telemetry.stats()
    if stats is None:
        return [ComponentStatus(component, "store", Status.DEGRADED,
                                f"the outbox store {outbox.store.location} cannot be read (see the otel_hardening log)",
                                component_type="datastore")]
    limit = outbox.policy.backlog_age_degraded
    age = stats.oldest_age()
    if not stats.pending:
        backlog = ComponentStatus(component, "backlog", Status.HEALTHY, "no request waiting", 0.0, "s",
                                  "datastore")
    else:
        status = Status.DEGRADED if age > limit else Status.HEALTHY
        backlog = ComponentStatus(component, "backlog", status,
                                  f"{stats.pending} requests waiting for their upstream, the oldest for {age:.0f}s "
                                  f"(degraded above {limit:g}s)", round(age, 3), "s", "datastore")
    if stats.dead:
        dead = ComponentStatus(component, "dead_letters", Status.DEGRADED,
                               f"{stats.dead} requests in the dead letters: see otel-hardening outbox list --dead",
                               stats.dead, "requests", "datastore")
    else:
        dead = ComponentStatus(component, "dead_letters", Status.HEALTHY, "no dead letters", 0, "requests",
                               "datastore")
    return [backlog, dead]

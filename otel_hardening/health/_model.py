"""The health model: statuses, components, aggregation and hysteresis. Pure: no threads, no I/O."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace


class Status(str, enum.Enum):
    """Health of a component or of the whole process, from best to worst."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _RANK[self]

    @property
    def ietf(self) -> str:
        """The IETF health-check draft's word: ``pass`` / ``warn`` / ``fail``."""
        return _IETF[self]

    def __str__(self) -> str:
        return self.value


_RANK = {Status.HEALTHY: 0, Status.DEGRADED: 1, Status.CRITICAL: 2}
_IETF = {Status.HEALTHY: "pass", Status.DEGRADED: "warn", Status.CRITICAL: "fail"}
_BY_RANK = {rank: status for status, rank in _RANK.items()}


def worst(statuses: Iterable[Status]) -> Status:
    return max(statuses, key=lambda s: s.rank, default=Status.HEALTHY)


@dataclass(frozen=True)
class ComponentStatus:
    """One measured aspect of the process or of a dependency."""

    component: str
    """What is measured: an upstream (``scheme://host:port``), a probe name, ``process``, ``telemetry``."""
    measurement: str
    """Which aspect: ``circuit``, ``retries``, ``errors``, ``responseTime``, ``fds``, ``memory``, ..."""
    status: Status
    reason: str
    """Short human-readable why; never URLs with credentials or secrets."""
    observed_value: float | str | None = None
    observed_unit: str | None = None
    component_type: str = "component"
    """IETF ``componentType``: ``component``, ``datastore`` or ``system``."""
    noncritical: bool = False
    """Declared non-critical: ``status`` was capped at degraded."""
    required: bool = False
    """Declared required (``HEALTH_REQUIRED``): critical makes the process not ready."""
    details: Mapping[str, str] = field(default_factory=dict, hash=False)
    """What else is known about the component that does not set its status, e.g. an upstream circuit's
    ``{"networkQuality": "good"}``; the health document shows it as the check's ``details``."""

    @property
    def name(self) -> str:
        """``component:measurement``, the key of the IETF ``checks`` object."""
        return f"{self.component}:{self.measurement}"


@dataclass(frozen=True)
class HealthReport:
    """The process health at one moment. ``since`` is the wall-clock time the status last changed."""

    status: Status
    components: tuple[ComponentStatus, ...]
    since: float
    time: float
    """Wall-clock time this report was computed."""
    ready: bool = True
    """Whether this process can serve: only its own resources, its samplers and required
    dependencies count (a dependency being down is ``status``, not readiness)."""
    not_ready: tuple[str, ...] = ()
    """``name: reason`` of each component that makes the process not ready."""

    @property
    def reasons(self) -> tuple[str, ...]:
        """``name: reason`` of every component that is not healthy, worst first."""
        bad = sorted((c for c in self.components if c.status is not Status.HEALTHY),
                     key=lambda c: -c.status.rank)
        return tuple(f"{c.name}: {c.reason}" for c in bad)


OWN_RESOURCES = frozenset({"fds", "memory"})
"""Components measuring this process's own resources: critical there means it cannot serve."""
SAMPLER_COMPONENTS = frozenset({"resources:sampler"})


def readiness(components: Iterable[ComponentStatus]) -> tuple[bool, tuple[str, ...]]:
    """Ready unless an own resource or a required dependency is critical, or a sampler is dead.

    An optional dependency being down is reported by ``status`` only: every replica shares the
    dependency, so failing readiness for it would take them all out of the load balancer at once
    and turn one dependency's outage into this service's outage.
    """
    why = [f"{c.name}: {c.reason}" for c in components
           if c.name in SAMPLER_COMPONENTS
           or (c.status is Status.CRITICAL and (c.required or c.component in OWN_RESOURCES))]
    return not why, tuple(why)


def dependency(component: ComponentStatus, noncritical: frozenset[str], required: frozenset[str],
               *aliases: str) -> ComponentStatus:
    """Mark ``component`` (also known by ``aliases``, e.g. the host) as required, or cap it at degraded
    when it is non-critical. A name in both lists is required (``HealthConfig`` removes it from
    ``noncritical``)."""
    names = {component.component, *aliases}
    if names & required:
        return replace(component, required=True)
    return cap_noncritical(component, noncritical, *aliases)


def cap_noncritical(component: ComponentStatus, noncritical: frozenset[str],
                    *aliases: str) -> ComponentStatus:
    """Cap ``component`` at degraded when it (or one of its ``aliases``, e.g. the host) is non-critical."""
    if not ({component.component, *aliases} & noncritical):
        return component
    if component.status is Status.CRITICAL:
        return replace(component, status=Status.DEGRADED, noncritical=True,
                       reason=component.reason + " (non-critical dependency: capped at degraded)")
    return replace(component, noncritical=True)


class Hysteresis:
    """Worse states apply at once; a better one only after the status stayed at least that good for
    ``hold`` seconds, so a status oscillating around a threshold reads as the worse state.

    ``at_most_since[s]`` is when the raw status last became ``<= s`` (and stayed so). Recovery to
    ``s`` is allowed once that has held for ``hold``; degraded may thus be reached before healthy.
    """

    def __init__(self, hold: float) -> None:
        self.hold = hold
        self.current: Status | None = None
        self.changed_at = 0.0
        self._at_most_since: dict[Status, float | None] = dict.fromkeys(Status)

    def update(self, raw: Status, now: float) -> Status:
        for level in Status:
            if raw.rank <= level.rank:
                if self._at_most_since[level] is None:
                    self._at_most_since[level] = now
            else:
                self._at_most_since[level] = None
        current = self.current
        if current is None or raw.rank >= current.rank:
            new = raw
        else:
            new = current
            for rank in range(raw.rank, current.rank):
                since = self._at_most_since[_BY_RANK[rank]]
                if since is not None and now - since >= self.hold:
                    new = _BY_RANK[rank]
                    break
        if new is not current:
            self.current = new
            self.changed_at = now
        return new


class Damper:
    """Hysteresis per component; the process status is the worst damped one. Forgets vanished components."""

    def __init__(self, hold: float) -> None:
        self.hold = hold
        self._components: dict[str, Hysteresis] = {}
        self.overall: Status | None = None
        self.changed_at = 0.0

    def apply(self, components: Iterable[ComponentStatus], now: float) -> tuple[tuple[ComponentStatus, ...],
                                                                               Status]:
        damped: list[ComponentStatus] = []
        seen: set[str] = set()
        for comp in components:
            seen.add(comp.name)
            hyst = self._components.setdefault(comp.name, Hysteresis(self.hold))
            status = hyst.update(comp.status, now)
            if status is not comp.status:
                comp = replace(comp, status=status,
                               reason=f"{comp.reason} (recovering: held {status.value} until stable "
                                      f"for {self.hold:g}s)")
            damped.append(comp)
        for gone in set(self._components) - seen:
            del self._components[gone]
        # The components are already damped: damping their worst again would double the hold.
        overall = worst(c.status for c in damped)
        if overall is not self.overall:
            self.overall = overall
            self.changed_at = now
        return tuple(damped), overall

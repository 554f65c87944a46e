"""Turning what other parts of the package (and the OTel SDK) observe into components.

Each source is a small object with ``components(now) -> list[ComponentStatus]``; none of them raises.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from otel_hardening.health._model import ComponentStatus, Status, dependency
from otel_hardening.health.config import HealthConfig

Clock = Callable[[], float]

_CIRCUIT = {
    "closed": (Status.HEALTHY, "circuit closed"),
    "half_open": (Status.DEGRADED, "circuit half-open: trial requests only"),
    "open": (Status.CRITICAL, "circuit open: calls are rejected"),
}
_CIRCUIT_RANK = {"closed": 0, "half_open": 1, "open": 2}


class UpstreamLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def host(self) -> str: ...
    @property
    def circuit_state(self) -> str: ...
    @property
    def calls(self) -> int: ...
    @property
    def attempts(self) -> int: ...
    @property
    def retries(self) -> int: ...
    @property
    def failures(self) -> int: ...


def _registry_snapshot() -> Sequence[UpstreamLike]:
    from otel_hardening.http import registry

    return registry.snapshot()


def _network_qualities() -> Mapping[str, str]:
    from otel_hardening.http import quality

    return quality.classes()


def _ratio_status(ratio: float, degraded: float, critical: float | None) -> Status:
    if critical is not None and ratio > critical:
        return Status.CRITICAL
    if ratio > degraded:
        return Status.DEGRADED
    return Status.HEALTHY


Counts = tuple[int, int, int, int, int]
"""calls, attempts, retries, failures, rejected (by the open circuit)."""
_ZERO: Counts = (0, 0, 0, 0, 0)


def _counts(u: UpstreamLike) -> Counts:
    return (u.calls, u.attempts, u.retries, u.failures, int(getattr(u, "rejected", 0)))


class Upstreams:
    """Circuit state, retry ratio and error ratio per upstream, ratios over a sliding window.

    Counters in the registry are monotonic since start; the window is the difference between the
    newest snapshot and the newest one at least ``window`` seconds old (or zero on the first sample).
    Calls the open circuit rejected are the circuit component's news, not errors: they are left out of
    the error ratio. When a circuit closes again its upstream's window restarts there, so failures from
    before the recovery do not keep the status down after it.

    The circuit component's ``details`` carry the upstream's network quality class (http/quality.py); it
    never sets a status: a slow link shows in the ratios and the circuit when it starts to fail.
    """

    def __init__(self, config: HealthConfig, snapshot: Callable[[], Sequence[UpstreamLike]] | None = None,
                 qualities: Callable[[], Mapping[str, str]] | None = None):
        self._config = config
        self._snapshot = snapshot or _registry_snapshot
        self._qualities = qualities or _network_qualities
        self._history: collections.deque[tuple[float, dict[str, Counts]]] = collections.deque(maxlen=4096)
        self._states: dict[str, str] = {}
        self._closed_at: dict[str, tuple[float, Counts]] = {}

    def _merged(self) -> tuple[dict[str, UpstreamLike], dict[str, Counts]]:
        ups: dict[str, UpstreamLike] = {}
        current: dict[str, Counts] = {}
        for u in self._snapshot():  # one upstream may appear once per policy set: merge by name
            counts = _counts(u)
            if u.name in ups:
                counts = tuple(a + b for a, b in zip(current[u.name], counts, strict=True))  # type: ignore[assignment]
                if _CIRCUIT_RANK.get(u.circuit_state, 1) <= _CIRCUIT_RANK.get(ups[u.name].circuit_state, 1):
                    u = ups[u.name]
            ups[u.name] = u
            current[u.name] = counts
        return ups, current

    def _baseline(self, name: str, now: float, state: str, counts: Counts, base: Counts, base_at: float) -> Counts:
        """The counts the window starts from: the window's, or the circuit's last closing if later."""
        previous = self._states.get(name)
        self._states[name] = state
        if state == "closed" and previous is not None and previous != "closed":
            self._closed_at[name] = (now, counts)
        closed = self._closed_at.get(name)
        if closed is not None:
            if closed[0] <= now - self._config.window:
                del self._closed_at[name]
            elif closed[0] >= base_at:
                base = closed[1]
        if any(c < b for c, b in zip(counts, base, strict=True)):  # counters were reset: count from zero
            return _ZERO
        return base

    def components(self, now: float) -> list[ComponentStatus]:
        cfg = self._config
        ups, current = self._merged()
        if len(self._history) >= 2 and now - self._history[-1][0] < 1.0:
            self._history[-1] = (now, current)  # frequent report() calls: keep one sample per second
        else:
            self._history.append((now, current))
        while len(self._history) >= 2 and self._history[1][0] <= now - cfg.window:
            self._history.popleft()
        base_at, base = self._history[0] if len(self._history) >= 2 else (now, {})
        for gone in set(self._states) - set(ups):
            self._states.pop(gone, None)
            self._closed_at.pop(gone, None)
        qualities = self._qualities()
        out: list[ComponentStatus] = []
        for u in ups.values():
            c = current[u.name]
            b = self._baseline(u.name, now, u.circuit_state, c, base.get(u.name, _ZERO), base_at)
            calls, attempts, retries, failures, rejected = (c[i] - b[i] for i in range(5))
            calls, failures = calls - rejected, failures - rejected
            status, reason = _CIRCUIT.get(u.circuit_state, (Status.DEGRADED, "unknown circuit state"))
            if rejected:
                reason += f" ({rejected} calls rejected over {cfg.window:g}s)"
            quality = qualities.get(u.name)
            details = {"networkQuality": quality} if quality is not None else {}
            found = [ComponentStatus(u.name, "circuit", status, reason, u.circuit_state, details=details)]
            if attempts >= cfg.min_calls:
                ratio = retries / attempts
                status = _ratio_status(ratio, cfg.retry_ratio_degraded, None)
                reason = (f"{retries} retries in {attempts} attempts over {cfg.window:g}s"
                          f" (degraded above {cfg.retry_ratio_degraded:g})")
                found.append(ComponentStatus(u.name, "retries", status, reason, round(ratio, 4), "ratio"))
            else:
                found.append(ComponentStatus(u.name, "retries", Status.HEALTHY,
                                             f"too few attempts to judge ({attempts} < {cfg.min_calls})",
                                             None, "ratio"))
            if calls >= cfg.min_calls:
                ratio = failures / calls
                status = _ratio_status(ratio, cfg.error_ratio_degraded, cfg.error_ratio_critical)
                reason = (f"{failures} of {calls} calls failed over {cfg.window:g}s (degraded above "
                          f"{cfg.error_ratio_degraded:g}, critical above {cfg.error_ratio_critical:g})")
                found.append(ComponentStatus(u.name, "errors", status, reason, round(ratio, 4), "ratio"))
            else:
                found.append(ComponentStatus(u.name, "errors", Status.HEALTHY,
                                             f"too few calls to judge ({calls} < {cfg.min_calls})",
                                             None, "ratio"))
            out.extend(dependency(f, cfg.noncritical, cfg.required, u.host) for f in found)
        return out


def _resources_snapshot() -> Any:
    try:
        from otel_hardening import resources
    except ImportError:
        return None
    snap = getattr(resources, "snapshot", None)
    return snap() if callable(snap) else None


class Resources:
    """fd usage, memory against the cgroup limit, suspected leaks and the resource sampler's liveness."""

    def __init__(self, config: HealthConfig, snapshot: Callable[[], Any] | None = None):
        self._config = config
        self._snapshot = snapshot or _resources_snapshot
        self.sampler_alive: bool | None = None
        """Last seen ``sampler_alive``; None when resource tracking is absent."""

    def components(self, now: float) -> list[ComponentStatus]:
        cfg = self._config
        snap = self._snapshot()
        if snap is None:
            self.sampler_alive = None
            return []
        out: list[ComponentStatus] = []
        fd_ratio = getattr(snap, "fd_usage_ratio", None)
        if fd_ratio is not None:
            status = _ratio_status(fd_ratio, cfg.fd_degraded, cfg.fd_critical)
            out.append(ComponentStatus("fds", "utilization", status,
                                       f"{fd_ratio:.0%} of the fd limit in use (degraded above "
                                       f"{cfg.fd_degraded:.0%}, critical above {cfg.fd_critical:.0%})",
                                       round(fd_ratio, 4), "ratio", "system"))
        usage, limit = getattr(snap, "memory_usage", None), getattr(snap, "memory_limit", None)
        if usage is not None and limit:
            ratio = usage / limit
            status = _ratio_status(ratio, cfg.memory_degraded, cfg.memory_critical)
            out.append(ComponentStatus("memory", "utilization", status,
                                       f"{ratio:.0%} of the cgroup memory limit in use (degraded "
                                       f"above {cfg.memory_degraded:.0%}, critical above "
                                       f"{cfg.memory_critical:.0%})",
                                       round(ratio, 4), "ratio", "system"))
        leaks: Mapping[str, bool] = getattr(snap, "leaks", None) or {}
        rates: Mapping[str, float] = getattr(snap, "growth_rates", None) or {}
        for kind in sorted(leaks):
            rate = rates.get(kind)
            if leaks[kind]:
                shown = f" (growing {rate:.3g}/s)" if isinstance(rate, int | float) else ""
                out.append(ComponentStatus("leak", kind, Status.DEGRADED, f"suspected {kind} leak{shown}",
                                           rate, "per_second", "system"))
            else:
                out.append(ComponentStatus("leak", kind, Status.HEALTHY, f"no {kind} leak suspected",
                                           rate, "per_second", "system"))
        hunt = getattr(snap, "last_hunt", None)
        if hunt is not None:
            top = hunt.sites[0] if hunt.sites else None
            shown = f"{top.file}:{top.line} +{top.size_diff} B" if top is not None else "no growing site"
            out.append(ComponentStatus("leak", "hunt", Status.HEALTHY, hunt.summary(), shown,
                                       component_type="system"))
        alive = getattr(snap, "sampler_alive", None)
        self.sampler_alive = None if alive is None else bool(alive)
        if alive is False:
            out.append(ComponentStatus("resources", "sampler", Status.DEGRADED,
                                       "the resource sampler thread is not running: leak data is stale",
                                       component_type="system"))
        return out


def _bypass_counts() -> Mapping[str, int]:
    from otel_hardening.http import bypass

    return bypass.counts()


def _bypass_detail(reason: str) -> str:
    from otel_hardening.http import bypass

    return bypass.detail(reason)


_HOOK_MISSING = "hook_missing"


class Hardening:
    """``hardening:self``: degraded while the layer let a client or a request through unhardened.

    Bypasses (http/bypass.py) are counted since the process started; the window is the difference
    between now and the newest sample at least ``window`` seconds old (everything, before one exists).
    A missing hook stays degraded for the life of the process: every client made since is unhardened.
    """

    def __init__(self, config: HealthConfig, counts: Callable[[], Mapping[str, int]] | None = None,
                 detail: Callable[[str], str] | None = None) -> None:
        self._config = config
        self._counts = counts or _bypass_counts
        self._detail = detail or _bypass_detail
        self._history: collections.deque[tuple[float, Mapping[str, int]]] = collections.deque(maxlen=4096)

    def components(self, now: float) -> list[ComponentStatus]:
        window = self._config.window
        current = dict(self._counts())
        if len(self._history) >= 2 and now - self._history[-1][0] < 1.0:
            self._history[-1] = (now, current)
        else:
            self._history.append((now, current))
        while len(self._history) >= 2 and self._history[1][0] <= now - window:
            self._history.popleft()
        at, base = self._history[0]
        if at > now - window or any(n < base.get(r, 0) for r, n in current.items()):
            base = {}  # nothing old enough yet (everything since start is recent), or the counts were reset
        recent = {r: n - base.get(r, 0) for r, n in sorted(current.items()) if n > base.get(r, 0)}
        parts = []
        if current.get(_HOOK_MISSING, 0) > 0:
            recent.pop(_HOOK_MISSING, None)
            parts.append(f"{_HOOK_MISSING}: {current[_HOOK_MISSING]} clients left unhardened since start "
                         f"({self._detail(_HOOK_MISSING)})")
        for reason, n in recent.items():
            shown = self._detail(reason)
            parts.append(f"{reason}: {n} over {window:g}s" + (f" ({shown})" if shown else ""))
        if not parts:
            return [ComponentStatus("hardening", "self", Status.HEALTHY,
                                    f"nothing went out unhardened over {window:g}s", 0, "events")]
        total = sum(recent.values()) + current.get(_HOOK_MISSING, 0)
        return [ComponentStatus("hardening", "self", Status.DEGRADED, "hardening bypassed: " + "; ".join(parts),
                                total, "events")]

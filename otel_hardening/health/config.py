"""Configuration of the health status: thresholds, windows, hysteresis, probes and the endpoint.

Secrets never leave this module in clear: the token is kept out of ``repr`` and probe URLs carry a
redacted form (no userinfo, secret-looking query values replaced) for anything that is logged or
reported.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from otel_hardening import _env
from otel_hardening._env import MAX_INTERVAL, MAX_PROBE_TIMEOUT, MAX_WINDOW
from otel_hardening._logging import log_once
from otel_hardening._redaction import redact_url

DETAILS_CHOICES = ("when_authorized", "always", "never")
MAX_PROBES = 32


@dataclass(frozen=True)
class Probe:
    """One active dependency check: GET ``url`` every ``HealthConfig.probe_interval`` seconds."""

    name: str
    url: str = field(repr=False)
    """May hold credentials; only ``display_url`` is ever logged or reported."""

    @property
    def display_url(self) -> str:
        return redact_url(self.url)


def _parse_probes(raw: str) -> tuple[Probe, ...]:
    """``name=url,name=url``. Bad entries are skipped with one error each; the URL is logged redacted."""
    probes: list[Probe] = []
    seen: set[str] = set()
    for entry in _env.csv(raw):
        name, sep, url = entry.partition("=")
        name, url = name.strip(), url.strip()
        problem = None
        if not sep or not name or not url:
            problem = "expected name=http://host:port/path"
        elif name in seen:
            problem = "duplicate probe name"
        else:
            try:
                parts = urlsplit(url)
                if parts.scheme not in ("http", "https") or not parts.hostname:
                    problem = "the URL must be http:// or https:// with a host"
                parts.port  # noqa: B018 - raises ValueError on a bad port
            except ValueError:
                problem = "the URL cannot be parsed"
        if problem is None and len(probes) >= MAX_PROBES:
            problem = f"at most {MAX_PROBES} probes"
        if problem is not None:
            shown = f"{name}={redact_url(url)}" if sep else "<entry without '='>"
            log_once(f"config:HEALTH_PROBES:{shown}", logging.ERROR,
                     "otel_hardening: invalid entry %r in %sHEALTH_PROBES (%s); skipping it",
                     shown, _env.PREFIX, problem)
            continue
        seen.add(name)
        probes.append(Probe(name=name, url=url))
    return tuple(probes)


def _endpoint(raw: str) -> tuple[str, int] | None:
    if raw.lower() in ("off", "false", "0", "none"):
        return None
    host, sep, port_s = raw.rpartition(":")
    if not sep:
        host, port_s = "127.0.0.1", raw
    host = host.strip("[]") or "127.0.0.1"
    port = int(port_s)
    if not 0 <= port <= 65535:
        raise _env.ConfigError(raw)
    return host, port


def _details(raw: str) -> str:
    low = raw.lower().replace("-", "_")
    if low not in DETAILS_CHOICES:
        raise _env.ConfigError(raw)
    return low


_DURATIONS = (
    ("interval", MAX_INTERVAL, False),
    ("window", MAX_WINDOW, False),
    ("recovery_hold", MAX_INTERVAL, True),
    ("probe_interval", MAX_INTERVAL, False),
    ("probe_timeout", MAX_PROBE_TIMEOUT, False),
    ("probe_slow", MAX_PROBE_TIMEOUT, False),
)
"""(field, upper bound, zero allowed) of every duration: docs/configuration.md lists them."""


@dataclass(frozen=True)
class HealthConfig:
    """What the health status watches and how it reports. Each default is explained beside it."""

    enabled: bool = True
    interval: float = 5.0
    """Seconds between evaluations: cheap (a few counters), and fast enough for a 10 s probe period."""
    window: float = 60.0
    """Seconds over which retry and error ratios are computed: one minute smooths single bursts."""
    min_calls: int = 10
    """Calls (or attempts) needed in the window before a ratio counts: 1 failure of 1 is no signal."""
    retry_ratio_degraded: float = 0.2
    """Retries / attempts above this is degraded: the default retry budget allows 20% extra load."""
    error_ratio_degraded: float = 0.1
    """Failed / logical calls above this is degraded for that upstream."""
    error_ratio_critical: float = 0.5
    """Failed / logical calls above this is critical: most calls fail even after retries."""
    fd_degraded: float = 0.8
    """Open fds / soft limit above this is degraded (the issue's threshold)."""
    fd_critical: float = 0.95
    """Open fds / soft limit above this is critical: accept() and open() are about to fail."""
    memory_degraded: float = 0.85
    """Memory / cgroup limit above this is degraded: the OOM killer is near but not imminent."""
    memory_critical: float = 0.95
    """Memory / cgroup limit above this is critical: the next allocation burst may be OOM-killed."""
    recovery_hold: float = 30.0
    """A better state applies only after it held this many seconds (worse applies at once)."""
    noncritical: frozenset[str] = frozenset()
    """Dependencies (upstream host, upstream name or probe name) whose worst contribution is degraded."""
    required: frozenset[str] = frozenset()
    """Dependencies (same names) without which this process cannot serve: critical makes it not
    ready. None by default: a shared dependency failing readiness takes every replica out at once."""
    probes: tuple[Probe, ...] = ()
    probe_interval: float = 10.0
    """Seconds between probes of one dependency: light on the dependency, quick enough to notice."""
    probe_timeout: float = 2.0
    """A probe slower than this is offline (critical)."""
    probe_slow: float = 0.5
    """A probe answering slower than this (but within the timeout) is slow (degraded)."""
    endpoint: tuple[str, int] | None = None
    """``(host, port)`` for /healthz, /readyz, /livez; off by default (no surprise listening sockets)."""
    details: str = "when_authorized"
    """``when_authorized`` (token needed), ``always`` or ``never``."""
    token: str | None = field(default=None, repr=False)
    """Bearer token that unlocks details; never logged."""

    def __post_init__(self) -> None:
        """Values given in code get the same bounds as the environment: a clear ``ValueError``."""
        for name, maximum, zero_ok in _DURATIONS:
            _env.check_seconds(f"HealthConfig.{name}", getattr(self, name), maximum, zero_ok)
        if self.probe_slow > self.probe_timeout:
            raise ValueError(f"HealthConfig.probe_slow={self.probe_slow!r} is out of range: accepted a "
                             f"duration <= probe_timeout ({self.probe_timeout:g}s)")
        object.__setattr__(self, "required", frozenset(self.required))
        object.__setattr__(self, "noncritical", frozenset(self.noncritical) - self.required)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> HealthConfig:
        d = cls()
        fraction = "a ratio between 0 and 1"
        timeout = _env.seconds(env, "HEALTH_PROBE_TIMEOUT", d.probe_timeout, MAX_PROBE_TIMEOUT)
        fd_deg = _env.read(env, "HEALTH_FD_DEGRADED", _env.ratio, d.fd_degraded, fraction)
        mem_deg = _env.read(env, "HEALTH_MEMORY_DEGRADED", _env.ratio, d.memory_degraded, fraction)
        err_deg = _env.read(env, "HEALTH_ERROR_RATIO_DEGRADED", _env.ratio, d.error_ratio_degraded, fraction)
        token = env.get(_env.PREFIX + "HEALTH_TOKEN", "").strip() or None
        return cls(
            enabled=_env.flag(env, "HEALTH", d.enabled),
            interval=_env.seconds(env, "HEALTH_INTERVAL", d.interval, MAX_INTERVAL),
            window=_env.seconds(env, "HEALTH_WINDOW", d.window, MAX_WINDOW),
            min_calls=_env.read(env, "HEALTH_MIN_CALLS", _env.positive_int, d.min_calls,
                                "a whole number >= 1"),
            retry_ratio_degraded=_env.read(env, "HEALTH_RETRY_RATIO_DEGRADED", _env.ratio,
                                           d.retry_ratio_degraded, fraction),
            error_ratio_degraded=err_deg,
            error_ratio_critical=max(err_deg, _env.read(env, "HEALTH_ERROR_RATIO_CRITICAL", _env.ratio,
                                                        d.error_ratio_critical, fraction)),
            fd_degraded=fd_deg,
            fd_critical=max(fd_deg, _env.read(env, "HEALTH_FD_CRITICAL", _env.ratio, d.fd_critical,
                                              fraction)),
            memory_degraded=mem_deg,
            memory_critical=max(mem_deg, _env.read(env, "HEALTH_MEMORY_CRITICAL", _env.ratio,
                                                   d.memory_critical, fraction)),
            recovery_hold=_env.seconds(env, "HEALTH_RECOVERY_HOLD", d.recovery_hold, MAX_INTERVAL, zero_ok=True),
            noncritical=frozenset(_env.csv(env.get(_env.PREFIX + "HEALTH_NONCRITICAL", ""))),
            required=frozenset(_env.csv(env.get(_env.PREFIX + "HEALTH_REQUIRED", ""))),
            probes=_parse_probes(env.get(_env.PREFIX + "HEALTH_PROBES", "")),
            probe_interval=_env.seconds(env, "HEALTH_PROBE_INTERVAL", d.probe_interval, MAX_INTERVAL),
            probe_timeout=timeout,
            probe_slow=min(timeout, _env.seconds(env, "HEALTH_PROBE_SLOW", d.probe_slow, MAX_PROBE_TIMEOUT)),
            endpoint=_env.read(env, "HEALTH_ENDPOINT", _endpoint, d.endpoint,
                               "host:port (e.g. 127.0.0.1:8099), a bare port, or off"),
            details=_env.read(env, "HEALTH_DETAILS", _details, d.details, ", ".join(DETAILS_CHOICES)),
            token=token,
        )

"""Typed configuration, read from ``OTEL_PYTHON_HARDENING_*`` or built in code for ``install()``.

Every default is explained in docs/configuration.md; the short version sits beside each
field here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from otel_hardening import _env
from otel_hardening.health.config import HealthConfig
from otel_hardening.resources.config import ResourceConfig

DEFAULT_RETRY_STATUSES = frozenset({408, 429, 502, 503, 504})

# Upper bounds of the durations (seconds): past them a value is a typo, not a setting, and would
# later overflow a timer or a sleep inside a request. docs/configuration.md lists them.
MAX_BACKOFF_INITIAL = 60.0
MAX_BACKOFF = 3600.0
MAX_DEADLINE = 86400.0
MAX_RETRY_AFTER = 86400.0
MAX_BUDGET_TTL = 3600.0
MAX_RESET_TIMEOUT = 86400.0
MAX_SLOW_REQUEST = 86400.0


@dataclass(frozen=True)
class RetryPolicy:
    """When and how often one logical request is attempted again."""

    max_attempts: int = 3
    """Total attempts, the first included: two retries ride out a blip without tripling load for long."""
    backoff_initial: float = 0.1
    """Upper bound of the first (fully jittered) wait, seconds."""
    backoff_max: float = 5.0
    """No single wait is longer than this, seconds."""
    deadline: float = 30.0
    """Total time one logical request may take across attempts and waits, seconds."""
    retry_statuses: frozenset[int] = DEFAULT_RETRY_STATUSES
    """Statuses worth another attempt; 500 is opt-in because it usually means a bug, not a blip."""
    retry_after_max: float = 60.0
    """Longest ``Retry-After`` honoured; a longer one ends the retries instead."""
    retry_non_idempotent: bool = False
    """Retry POST/PATCH without an ``Idempotency-Key``: off, a resent payment is worse than an error."""

    def __post_init__(self) -> None:
        _whole("RetryPolicy.max_attempts", self.max_attempts,
               "a whole number >= 1 (total attempts, the first included)")
        _env.check_seconds("RetryPolicy.backoff_initial", self.backoff_initial, MAX_BACKOFF_INITIAL)
        _env.check_seconds("RetryPolicy.backoff_max", self.backoff_max, MAX_BACKOFF)
        _env.check_seconds("RetryPolicy.deadline", self.deadline, MAX_DEADLINE)
        _env.check_seconds("RetryPolicy.retry_after_max", self.retry_after_max, MAX_RETRY_AFTER, zero_ok=True)
        statuses = self.retry_statuses
        if not isinstance(statuses, (set, frozenset)) or not all(
                isinstance(c, int) and not isinstance(c, bool) and 100 <= c <= 599 for c in statuses):
            raise ValueError(f"RetryPolicy.retry_statuses={statuses!r}: accepted a set of HTTP status codes "
                             "(ints 100-599), e.g. frozenset({429, 503})")
        _flag("RetryPolicy.retry_non_idempotent", self.retry_non_idempotent)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RetryPolicy:
        d = cls()
        initial = _env.seconds(env, "RETRY_BACKOFF_INITIAL", d.backoff_initial, MAX_BACKOFF_INITIAL)
        return cls(
            max_attempts=_env.read(env, "RETRY_MAX_ATTEMPTS", _env.positive_int, d.max_attempts,
                                   "a whole number >= 1 (total attempts, the first included)"),
            backoff_initial=initial,
            backoff_max=max(initial, _env.seconds(env, "RETRY_BACKOFF_MAX", d.backoff_max, MAX_BACKOFF)),
            deadline=_env.seconds(env, "RETRY_DEADLINE", d.deadline, MAX_DEADLINE),
            retry_statuses=_env.read(env, "RETRY_STATUSES", _env.status_codes, d.retry_statuses,
                                     "comma-separated HTTP status codes, e.g. 408,429,502,503,504"),
            retry_after_max=_env.seconds(env, "RETRY_AFTER_MAX", d.retry_after_max, MAX_RETRY_AFTER, zero_ok=True),
            retry_non_idempotent=_env.flag(env, "RETRY_NON_IDEMPOTENT", d.retry_non_idempotent),
        )


@dataclass(frozen=True)
class BudgetPolicy:
    """Per-upstream retry budget (token bucket, as Finagle's RetryBudget)."""

    ratio: float = 0.2
    """Retries may add at most this share of the request rate: an outage costs 1.2x load, not 3x."""
    min_per_second: float = 10.0
    """Retries always allowed per second, so quiet clients still retry."""
    ttl: float = 10.0
    """Seconds a deposit stays usable; bounds the burst a long quiet period can save up."""

    def __post_init__(self) -> None:
        _number("BudgetPolicy.ratio", self.ratio, "a number >= 0 (0.2 = retries add at most 20% load)")
        _number("BudgetPolicy.min_per_second", self.min_per_second, "a number of retries per second >= 0")
        _env.check_seconds("BudgetPolicy.ttl", self.ttl, MAX_BUDGET_TTL)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> BudgetPolicy:
        d = cls()
        return cls(
            ratio=_env.read(env, "RETRY_BUDGET_RATIO", _env.non_negative_float, d.ratio,
                            "a number >= 0 (0.2 = retries add at most 20% load)"),
            min_per_second=_env.read(env, "RETRY_BUDGET_MIN_PER_SECOND", _env.non_negative_float,
                                     d.min_per_second, "a number of retries per second >= 0"),
            ttl=_env.seconds(env, "RETRY_BUDGET_TTL", d.ttl, MAX_BUDGET_TTL),
        )


@dataclass(frozen=True)
class CircuitPolicy:
    """Per-upstream circuit breaker."""

    fail_max: int = 5
    """Consecutive failures that open the circuit."""
    reset_timeout: float = 30.0
    """Seconds open before trial requests are let through."""
    half_open_max_calls: int = 1
    """Trial requests in flight at once while half-open; with Redis-shared state, across every process
    sharing it (each slot a lease of ``reset_timeout`` seconds, so a crashed holder cannot wedge it)."""
    storage: str = "memory"
    """``memory`` or ``redis://host:port/db`` to share state across processes."""

    def __post_init__(self) -> None:
        _whole("CircuitPolicy.fail_max", self.fail_max, "a whole number >= 1")
        _env.check_seconds("CircuitPolicy.reset_timeout", self.reset_timeout, MAX_RESET_TIMEOUT)
        _whole("CircuitPolicy.half_open_max_calls", self.half_open_max_calls, "a whole number >= 1")
        try:
            _storage(self.storage if isinstance(self.storage, str) else "")
        except _env.ConfigError:
            raise ValueError(f"CircuitPolicy.storage={self.storage!r}: accepted memory, or "
                             "redis://host:port/db (rediss:// for TLS)") from None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> CircuitPolicy:
        d = cls()
        return cls(
            fail_max=_env.read(env, "CIRCUIT_FAIL_MAX", _env.positive_int, d.fail_max, "a whole number >= 1"),
            reset_timeout=_env.seconds(env, "CIRCUIT_RESET_TIMEOUT", d.reset_timeout, MAX_RESET_TIMEOUT),
            half_open_max_calls=_env.read(env, "CIRCUIT_HALF_OPEN_MAX_CALLS", _env.positive_int,
                                          d.half_open_max_calls, "a whole number >= 1"),
            storage=_env.read(env, "CIRCUIT_STORAGE", _storage, d.storage,
                              "memory, or redis://host:port/db (rediss:// for TLS)"),
        )


SLOW_ACCEPTED = f"off, or {_env.duration_accepted(MAX_SLOW_REQUEST)}"
SLOW_UPSTREAMS_ACCEPTED = ("comma-separated host[:port]=duration|off entries, e.g. "
                           "api.example.com=10s,reports.internal:8443=1m,[::1]=off")


@dataclass(frozen=True)
class SlowRequestPolicy:
    """When a logical call is logged as slow (one ``hardening.slow_request`` record, rate limited)."""

    threshold: float | None = 5.0
    """Seconds from the call's start to its answer (attempts and waits included) past which it is slow;
    None: off. 5 s: far above a healthy API call, below the 10-30 s where users and load balancers give up."""
    upstreams: Mapping[str, float | None] = field(default_factory=dict)
    """Per-upstream thresholds by ``host`` or ``host:port`` (``[v6]:port``), None turning it off: a
    report endpoint that takes 30 s by design should not flood the log."""
    logs_per_minute: float = 6.0
    """Records per minute per upstream (token bucket): one every 10 s tells the story of a slow upstream;
    ``hardening.http.client.slow_requests`` counts every slow call."""
    burst: int = 3
    """Records an upstream may emit at once before the rate applies: the first few of an incident."""

    def __post_init__(self) -> None:
        if self.threshold is not None:
            _env.check_seconds("SlowRequestPolicy.threshold", self.threshold, MAX_SLOW_REQUEST)
        if not isinstance(self.upstreams, Mapping):
            raise TypeError(f"SlowRequestPolicy.upstreams={self.upstreams!r}: accepted a mapping of "
                            "host or host:port to seconds or None, e.g. {'api.example.com': 10.0}")
        normalized: dict[str, float | None] = {}
        for key, value in self.upstreams.items():
            name = f"SlowRequestPolicy.upstreams[{key!r}]"
            if not isinstance(key, str) or _upstream_key(key) is None:
                raise ValueError(f"{name}: accepted a host or host:port key, e.g. 'api.example.com:443'")
            if value is not None:
                _env.check_seconds(name, value, MAX_SLOW_REQUEST)
            normalized[_upstream_key(key) or key] = None if value is None else float(value)
        object.__setattr__(self, "upstreams", normalized)
        _number("SlowRequestPolicy.logs_per_minute", self.logs_per_minute, "a number of records per minute >= 0")
        _whole("SlowRequestPolicy.burst", self.burst, "a whole number >= 1")

    def __hash__(self) -> int:
        return hash((self.threshold, tuple(sorted(self.upstreams.items())), self.logs_per_minute, self.burst))

    def threshold_for(self, host: str, port: int) -> float | None:
        """The threshold of one upstream: its ``host:port`` entry, else its ``host`` entry, else the default."""
        upstreams = self.upstreams
        if upstreams:
            shown = f"[{host}]" if ":" in host else host.lower()
            for key in (f"{shown}:{port}", shown):
                if key in upstreams:
                    return upstreams[key]
        return self.threshold

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SlowRequestPolicy:
        d = cls()
        return cls(
            threshold=_env.read(env, "SLOW_REQUEST", _slow_threshold, d.threshold, SLOW_ACCEPTED, shown="5s"),
            upstreams=_env.read(env, "SLOW_REQUEST_UPSTREAMS", _slow_upstreams, {}, SLOW_UPSTREAMS_ACCEPTED,
                                shown="none"),
        )


_OFF = frozenset({"off", "false", "no", "none", "0"})
_HOST_PORT = re.compile(r"(?P<host>\[[0-9a-f:.]+\]|[a-z0-9_.-]+)(?::(?P<port>[0-9]{1,5}))?", re.ASCII)


def _upstream_key(raw: str) -> str | None:
    """``host`` or ``host:port`` lower-cased, or None when it is neither."""
    match = _HOST_PORT.fullmatch(raw.strip().lower())
    if match is None or (match["port"] is not None and not 0 < int(match["port"]) < 65536):
        return None
    return match[0]


def _slow_threshold(raw: str) -> float | None:
    if raw.lower() in _OFF:
        return None
    try:
        return _env.check_seconds("SLOW_REQUEST", _env.parse_duration(raw), MAX_SLOW_REQUEST)
    except ValueError:
        raise _env.ConfigError(raw) from None


def _slow_upstreams(raw: str) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for entry in _env.csv(raw):
        key, sep, value = entry.partition("=")
        host = _upstream_key(key)
        if not sep or host is None:
            raise _env.ConfigError(raw)
        out[host] = _slow_threshold(value.strip())
    return out
QUALITY_LATENCY_ACCEPTED = ("three increasing durations > 0 and <= 1h: the p95 attempt latency under which "
                            "an upstream is excellent, good, fair (e.g. 100ms,300ms,1s)")
QUALITY_FAILURE_ACCEPTED = ("three increasing ratios > 0 and <= 1: the failed-attempt share under which an "
                            "upstream is excellent, good, fair (e.g. 0.01,0.05,0.2)")
MAX_QUALITY_LATENCY = 3600.0
MAX_QUALITY_WINDOW = 3600.0


@dataclass(frozen=True)
class QualityPolicy:
    """How each upstream's network quality class is judged (http/quality.py, docs/telemetry.md)."""

    latency: tuple[float, float, float] = (0.1, 0.3, 1.0)
    """p95 attempt latency (s) under which an upstream is excellent, good, fair; at or above the last,
    poor. 100 ms: a same-region call with TLS; 300 ms: users start to notice; 1 s: a timeout is near."""
    failure_ratio: tuple[float, float, float] = (0.01, 0.05, 0.2)
    """Failed attempts (5xx, 429, transport errors) per attempt under which it is excellent, good, fair.
    1 % is background noise; 5 % is what a retry hides; past 20 % every fifth call needs a retry."""
    window: float = 60.0
    """Attempts from this many seconds (at most the last 200) are judged: one metric scrape or a few health
    evaluations, short enough that a recovered link reads as recovered within a minute or two."""
    better_after: int = 3
    """A better class applies only after it held for this many evaluations in a row (worse: at once)."""
    margin: float = 0.1
    """...and only while the value is this share past the threshold (p95 < 90 ms for excellent), so a value
    sitting on a threshold does not flap."""

    def __post_init__(self) -> None:
        if not _increasing(self.latency, MAX_QUALITY_LATENCY):
            raise ValueError(f"QualityPolicy.latency={self.latency!r}: accepted {QUALITY_LATENCY_ACCEPTED} "
                             "as seconds, e.g. (0.1, 0.3, 1.0)")
        if not _increasing(self.failure_ratio, 1.0):
            raise ValueError(f"QualityPolicy.failure_ratio={self.failure_ratio!r}: accepted "
                             f"{QUALITY_FAILURE_ACCEPTED}, e.g. (0.01, 0.05, 0.2)")
        _env.check_seconds("QualityPolicy.window", self.window, MAX_QUALITY_WINDOW)
        _whole("QualityPolicy.better_after", self.better_after, "a whole number >= 1")
        if isinstance(self.margin, bool) or not isinstance(self.margin, (int, float)) or not 0 <= self.margin < 1:
            raise ValueError(f"QualityPolicy.margin={self.margin!r}: accepted a share >= 0 and < 1 (0.1 = 10 %)")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> QualityPolicy:
        d = cls()
        return cls(
            latency=_env.read(env, "QUALITY_LATENCY", _latency_triple, d.latency, QUALITY_LATENCY_ACCEPTED,
                              shown="100ms,300ms,1s"),
            failure_ratio=_env.read(env, "QUALITY_FAILURE_RATIO", _ratio_triple, d.failure_ratio,
                                    QUALITY_FAILURE_ACCEPTED, shown="0.01,0.05,0.2"),
            window=_env.seconds(env, "QUALITY_WINDOW", d.window, MAX_QUALITY_WINDOW),
        )


def _increasing(values: object, maximum: float) -> bool:
    if not isinstance(values, tuple) or len(values) != 3:
        return False
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return False
    low, mid, high = values
    return bool(0 < low < mid < high <= maximum)


def _latency_triple(raw: str) -> tuple[float, float, float]:
    values = tuple(_env.parse_duration(part) for part in raw.split(","))
    if not _increasing(values, MAX_QUALITY_LATENCY):
        raise _env.ConfigError(raw)
    return values  # type: ignore[return-value]


def _ratio_triple(raw: str) -> tuple[float, float, float]:
    values = tuple(float(part) for part in raw.split(","))
    if not _increasing(values, 1.0):
        raise _env.ConfigError(raw)
    return values  # type: ignore[return-value]


def _whole(name: str, value: object, accepted: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}={value!r}: accepted {accepted}")
    if value < 1:
        raise ValueError(f"{name}={value!r} is out of range: accepted {accepted}")


def _number(name: str, value: object, accepted: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}={value!r}: accepted {accepted}")
    if not 0 <= value < float("inf"):
        raise ValueError(f"{name}={value!r} is out of range: accepted {accepted}")


def _flag(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name}={value!r}: accepted True or False")


OUTBOX_ACCEPTED = ("off, on (the app's default file), a file path, sqlite:///path, or redis://host:port/db "
                   "(rediss://, unix://)")


def outbox_store(raw: str) -> str | None:
    """``OTEL_PYTHON_HARDENING_OUTBOX``: None (off), "" (the app's default file) or the store's URL or path."""
    low = raw.strip().lower()
    if low in ("off", "false", "no", "0", "none"):
        return None
    if low in ("on", "true", "yes", "1"):
        return ""
    if "://" in raw and not raw.startswith(("sqlite://", "redis://", "rediss://", "unix://")):
        raise _env.ConfigError(raw)
    return raw.strip()


def _storage(raw: str) -> str:
    if raw == "memory" or raw.startswith(("redis://", "rediss://", "unix://")):
        return raw
    raise _env.ConfigError(raw)


@dataclass(frozen=True)
class HardeningConfig:
    """Everything ``install()`` turns on. ``HardeningConfig.from_env()`` is what zero-code uses."""

    retry: RetryPolicy = field(default_factory=RetryPolicy)
    budget: BudgetPolicy = field(default_factory=BudgetPolicy)
    circuit: CircuitPolicy = field(default_factory=CircuitPolicy)
    slow: SlowRequestPolicy = field(default_factory=SlowRequestPolicy)
    resources: ResourceConfig = field(default_factory=ResourceConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    quality: QualityPolicy = field(default_factory=QualityPolicy)
    """How each upstream's network quality class is judged (``hardening.http.client.network.quality``)."""
    instrument_httpx: bool = True
    """Also turn on opentelemetry-instrumentation-httpx (one CLIENT span per attempt) if it is off."""
    max_upstreams: int = 1000
    """Upstreams whose circuit and budget are kept; past it idle closed ones are forgotten (a crawler
    calling 5,000 hosts stays within ~10 MiB). Open circuits are never forgotten."""
    max_upstream_series: int = 100
    """Upstreams with their own metric series and health components; the rest are ``_other``. 100 keeps
    every metric far under the SDK's 2,000-series limit, and more is not readable on a dashboard."""
    outbox: str | None = None
    """The store of an outbox every client ``install()`` hardens defers its failed writes to
    (docs/outbox.md): a path, ``sqlite:///path``, ``redis://...``, ``""`` the app's default file; None: off.
    Credentials are stored with the requests (nothing could sign the replays again without code);
    ``install(outbox=Outbox(..., before_replay=...))`` keeps them out."""

    def __post_init__(self) -> None:
        _whole("HardeningConfig.max_upstreams", self.max_upstreams, "a whole number >= 1")
        _whole("HardeningConfig.max_upstream_series", self.max_upstream_series, "a whole number >= 1")
        if self.outbox is not None:
            try:
                if not isinstance(self.outbox, str) or outbox_store(self.outbox) != self.outbox.strip():
                    raise _env.ConfigError(self.outbox)
            except _env.ConfigError:
                raise ValueError(f"HardeningConfig.outbox={self.outbox!r}: accepted None (off), \"\" (the app's "
                                 "default file), a file path, sqlite:///path or redis://host:port/db") from None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> HardeningConfig:
        env = os.environ if env is None else env
        return cls(
            retry=RetryPolicy.from_env(env),
            budget=BudgetPolicy.from_env(env),
            circuit=CircuitPolicy.from_env(env),
            slow=SlowRequestPolicy.from_env(env),
            resources=ResourceConfig.from_env(env),
            health=HealthConfig.from_env(env),
            quality=QualityPolicy.from_env(env),
            instrument_httpx=_env.flag(env, "INSTRUMENT_HTTPX", True),
            max_upstreams=_env.read(env, "MAX_UPSTREAMS", _env.positive_int, 1000, "a whole number >= 1"),
            max_upstream_series=_env.read(env, "MAX_UPSTREAM_SERIES", _env.positive_int, 100,
                                          "a whole number >= 1"),
            outbox=_env.read(env, "OUTBOX", outbox_store, None, OUTBOX_ACCEPTED, shown="off"),
        )

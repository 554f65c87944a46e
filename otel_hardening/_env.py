"""Reading ``OTEL_PYTHON_HARDENING_*`` variables.

Every parser takes the variable name, the environment and the default; a bad value logs one error
naming the variable, the value and what is accepted, and the default is used. Configuration must
never stop the host application from starting.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Collection, Mapping
from typing import TypeVar

from otel_hardening._logging import log_once

PREFIX = "OTEL_PYTHON_HARDENING_"

T = TypeVar("T")

# Shared upper bounds (seconds) for periodic work and windows: a sampler tick or probe period past an
# hour, or a window past a day, is a typo, and 1e12 would kill a sampler thread with OverflowError.
MAX_INTERVAL = 3600.0
MAX_WINDOW = 86400.0
MAX_PROBE_TIMEOUT = 300.0

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message names the setting and what is accepted."""


def show(value: object) -> str:
    """A value as a user would write it in the environment: ``on``, ``none``, ``408,429``, ``30s``."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if value is None:
        return "none"
    if isinstance(value, str):
        return value
    if isinstance(value, Collection):
        return ",".join(sorted(show(item) for item in value))
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _reject(name: str, raw: str, accepted: str, default: str) -> None:
    # The logger is named otel_hardening: the message does not repeat it.
    log_once(
        f"config:{name}={raw}",
        logging.ERROR,
        "invalid %s=%r (accepted: %s); using the default %s",
        name,
        raw,
        accepted,
        default,
    )


def read(
    env: Mapping[str, str],
    suffix: str,
    parse: Callable[[str], T],
    default: T,
    accepted: str,
    shown: str | None = None,
) -> T:
    """Read ``OTEL_PYTHON_HARDENING_<suffix>`` with ``parse``; fall back to ``default`` on any error."""
    name = PREFIX + suffix
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return parse(raw.strip())
    except (ValueError, ConfigError):
        _reject(name, raw, accepted, show(default) if shown is None else shown)
        return default


def parse_bool(raw: str) -> bool:
    low = raw.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ConfigError(raw)


def positive_float(raw: str) -> float:
    value = float(raw)
    if not value > 0 or value == float("inf"):
        raise ConfigError(raw)
    return value


def non_negative_float(raw: str) -> float:
    value = float(raw)
    if not value >= 0 or value == float("inf"):
        raise ConfigError(raw)
    return value


def ratio(raw: str) -> float:
    value = float(raw)
    if not 0 <= value <= 1:
        raise ConfigError(raw)
    return value


def positive_int(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise ConfigError(raw)
    return value


def csv(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def status_codes(raw: str) -> frozenset[int]:
    codes = frozenset(int(part) for part in csv(raw))
    if not codes or any(not 100 <= code <= 599 for code in codes):
        raise ConfigError(raw)
    return codes


_DURATION = re.compile(r"(?P<number>(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:e[+-]?[0-9]+)?)\s*(?P<unit>ms|s|m|h)?", re.ASCII)
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(raw: str) -> float:
    """``30``, ``30s``, ``500ms``, ``5m``, ``1h`` (ASCII digits only) as seconds."""
    match = _DURATION.fullmatch(raw.strip().lower())
    if match is None:
        raise ConfigError(raw)
    return float(match["number"]) * _UNIT_SECONDS[match["unit"]]


def duration_accepted(maximum: float, zero_ok: bool = False) -> str:
    low = ">= 0" if zero_ok else "> 0"
    return f"a duration {low} and <= {maximum:g}s: seconds (30) or with a unit (500ms, 30s, 5m, 1h)"


def check_seconds(name: str, value: float, maximum: float, zero_ok: bool = False) -> float:
    """A duration given in code: ``ValueError`` naming ``name`` unless it is finite and in range.

    Every duration has an upper bound: 1e12 seconds is not a setting, it is a typo that would
    later overflow a timer or a ``time.sleep`` inside a request or a sampler thread.
    """
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not (ok and (value >= 0 if zero_ok else value > 0) and value <= maximum):
        raise ValueError(f"{name}={value!r} is out of range: accepted {duration_accepted(maximum, zero_ok)}")
    return float(value)


def seconds(env: Mapping[str, str], suffix: str, default: float, maximum: float, zero_ok: bool = False) -> float:
    """Read a duration variable; out of range is rejected like garbage (one error, the default)."""

    def parse(raw: str) -> float:
        value = parse_duration(raw)
        try:
            return check_seconds(suffix, value, maximum, zero_ok)
        except ValueError:
            raise ConfigError(raw) from None

    return read(env, suffix, parse, default, duration_accepted(maximum, zero_ok), shown=f"{default:g}s")


def flag(env: Mapping[str, str], suffix: str, default: bool) -> bool:
    return read(env, suffix, parse_bool, default, "on/off, true/false, 1/0, yes/no")

"""Reading ``OTEL_PYTHON_HARDENING_*`` variables.

Every parser takes the variable name, the environment and the default; a bad value logs one error
naming the variable, the value and what is accepted, and the default is used. Configuration must
never stop the host application from starting.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TypeVar

from otel_hardening._logging import log_once

PREFIX = "OTEL_PYTHON_HARDENING_"

T = TypeVar("T")

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message names the setting and what is accepted."""


def _reject(name: str, raw: str, accepted: str, default: object) -> None:
    log_once(
        f"config:{name}={raw}",
        logging.ERROR,
        "otel_hardening: invalid %s=%r (accepted: %s); using the default %r",
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
) -> T:
    """Read ``OTEL_PYTHON_HARDENING_<suffix>`` with ``parse``; fall back to ``default`` on any error."""
    name = PREFIX + suffix
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return parse(raw.strip())
    except (ValueError, ConfigError):
        _reject(name, raw, accepted, default)
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


def flag(env: Mapping[str, str], suffix: str, default: bool) -> bool:
    return read(env, suffix, parse_bool, default, "on/off, true/false, 1/0, yes/no")

"""Reading OTEL_PYTHON_HARDENING_* values: durations with units, bounds, and one clean error line."""

from __future__ import annotations

import logging

import pytest

from otel_hardening import _env
from otel_hardening._logging import forget

P = _env.PREFIX


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [("30", 30.0), ("30s", 30.0), ("500ms", 0.5), ("5m", 300.0), ("1h", 3600.0), (".5s", 0.5), ("1e2", 100.0),
     (" 2 S ", 2.0)],
)
def test_durations_accept_the_readmes_spelling(raw: str, seconds: float) -> None:
    assert _env.parse_duration(raw) == seconds


@pytest.mark.parametrize("raw", ["nan", "inf", "-1", "٣", "²", "30x", "s", "1e999999", ""])
def test_garbage_durations_are_rejected(raw: str) -> None:
    with pytest.raises(ValueError):  # ConfigError is a ValueError
        value = _env.parse_duration(raw)
        _env.check_seconds("X", value, 3600)


def test_out_of_range_is_one_clear_error_and_the_default(caplog: pytest.LogCaptureFixture) -> None:
    forget(f"config:{P}RETRY_DEADLINE=1e12")
    with caplog.at_level(logging.ERROR, logger="otel_hardening"):
        value = _env.seconds({P + "RETRY_DEADLINE": "1e12"}, "RETRY_DEADLINE", 30.0, 3600.0)
    assert value == 30.0
    [record] = caplog.records
    message = record.getMessage()
    assert f"{P}RETRY_DEADLINE='1e12'" in message
    assert "<= 3600s" in message and "500ms" in message
    assert message.endswith("using the default 30s")
    assert "otel_hardening:" not in message  # the logger's name says it once


def test_defaults_are_shown_as_a_user_writes_them() -> None:
    assert _env.show(frozenset({503, 408, 429})) == "408,429,503"
    assert _env.show(True) == "on" and _env.show(False) == "off"
    assert _env.show(None) == "none"
    assert _env.show(0.25) == "0.25"


def test_code_given_durations_name_the_field() -> None:
    with pytest.raises(ValueError, match=r"RetryPolicy\.deadline=inf is out of range"):
        _env.check_seconds("RetryPolicy.deadline", float("inf"), 3600)
    with pytest.raises(ValueError, match="nan"):
        _env.check_seconds("deadline", float("nan"), 3600)
    assert _env.check_seconds("hold", 0, 3600, zero_ok=True) == 0.0
    with pytest.raises(ValueError):
        _env.check_seconds("interval", 0, 3600)

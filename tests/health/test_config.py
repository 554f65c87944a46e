from __future__ import annotations

import logging

import pytest

from otel_hardening._logging import _seen
from otel_hardening._redaction import redact_url
from otel_hardening.config import HardeningConfig
from otel_hardening.health import HealthConfig
from otel_hardening.health.config import MAX_PROBES, Probe

P = "OTEL_PYTHON_HARDENING_"


@pytest.fixture(autouse=True)
def _fresh_log_once() -> None:
    _seen.clear()


def test_defaults_from_an_empty_environment() -> None:
    assert HealthConfig.from_env({}) == HealthConfig()
    assert HealthConfig().endpoint is None  # off by default
    assert HardeningConfig.from_env({}).health == HealthConfig()


def test_everything_from_env() -> None:
    cfg = HealthConfig.from_env({
        P + "HEALTH_INTERVAL": "2", P + "HEALTH_WINDOW": "30", P + "HEALTH_MIN_CALLS": "5",
        P + "HEALTH_RETRY_RATIO_DEGRADED": "0.3", P + "HEALTH_ERROR_RATIO_DEGRADED": "0.2",
        P + "HEALTH_ERROR_RATIO_CRITICAL": "0.6", P + "HEALTH_FD_DEGRADED": "0.7",
        P + "HEALTH_FD_CRITICAL": "0.9",
        P + "HEALTH_MEMORY_DEGRADED": "0.8", P + "HEALTH_MEMORY_CRITICAL": "0.9",
        P + "HEALTH_RECOVERY_HOLD": "0", P + "HEALTH_NONCRITICAL": " cache , search ,",
        P + "HEALTH_PROBES": "db=http://db:5432/health, cache=https://cache/ping",
        P + "HEALTH_PROBE_INTERVAL": "3", P + "HEALTH_PROBE_TIMEOUT": "1", P + "HEALTH_PROBE_SLOW": "0.2",
        P + "HEALTH_ENDPOINT": "0.0.0.0:9000", P + "HEALTH_DETAILS": "always", P + "HEALTH_TOKEN": "tok",
        P + "HEALTH": "on",
    })
    assert cfg == HealthConfig(
        interval=2, window=30, min_calls=5, retry_ratio_degraded=0.3, error_ratio_degraded=0.2,
        error_ratio_critical=0.6, fd_degraded=0.7, fd_critical=0.9, memory_degraded=0.8, memory_critical=0.9,
        recovery_hold=0, noncritical=frozenset({"cache", "search"}),
        probes=(Probe("db", "http://db:5432/health"), Probe("cache", "https://cache/ping")),
        probe_interval=3, probe_timeout=1, probe_slow=0.2, endpoint=("0.0.0.0", 9000), details="always",
        token="tok")


@pytest.mark.parametrize(("raw", "expected"), [("8099", ("127.0.0.1", 8099)), (":8099", ("127.0.0.1", 8099)),
                                               ("[::1]:8099", ("::1", 8099)), ("off", None)])
def test_endpoint_forms(raw: str, expected: object) -> None:
    assert HealthConfig.from_env({P + "HEALTH_ENDPOINT": raw}).endpoint == expected


@pytest.mark.parametrize(("suffix", "raw"), [("HEALTH_INTERVAL", "-1"), ("HEALTH_FD_DEGRADED", "1.5"),
                                             ("HEALTH_ENDPOINT", "host:notaport"),
                                             ("HEALTH_ENDPOINT", "127.0.0.1:70000"),
                                             ("HEALTH_DETAILS", "sometimes"), ("HEALTH_MIN_CALLS", "0")])
def test_bad_values_log_one_error_and_use_the_default(suffix: str, raw: str,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, "otel_hardening"):
        assert HealthConfig.from_env({P + suffix: raw}) == HealthConfig()
        HealthConfig.from_env({P + suffix: raw})
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert P + suffix in errors[0].getMessage() and repr(raw) in errors[0].getMessage()


def test_inconsistent_thresholds_are_ordered() -> None:
    cfg = HealthConfig.from_env({P + "HEALTH_FD_DEGRADED": "0.9", P + "HEALTH_FD_CRITICAL": "0.5",
                                 P + "HEALTH_PROBE_TIMEOUT": "1", P + "HEALTH_PROBE_SLOW": "5"})
    assert cfg.fd_critical == 0.9 and cfg.probe_slow == 1


def test_bad_probes_are_skipped_and_logged_redacted(caplog: pytest.LogCaptureFixture) -> None:
    raw = ("ok=http://h/health,noequals,ftp=ftp://h/x,=http://h/,ok=http://h/dupe,"
           "badport=http://u:hunter2@h:99999/?api_key=hunter3")
    with caplog.at_level(logging.ERROR, "otel_hardening"):
        cfg = HealthConfig.from_env({P + "HEALTH_PROBES": raw})
    assert cfg.probes == (Probe("ok", "http://h/health"),)
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 5
    assert "hunter2" not in caplog.text and "hunter3" not in caplog.text
    assert "HEALTH_PROBES" in caplog.text


def test_probe_count_is_bounded() -> None:
    raw = ",".join(f"p{i}=http://h/{i}" for i in range(MAX_PROBES + 5))
    assert len(HealthConfig.from_env({P + "HEALTH_PROBES": raw}).probes) == MAX_PROBES


def test_secrets_are_not_in_repr() -> None:
    cfg = HealthConfig.from_env({P + "HEALTH_TOKEN": "s3cr3t-token",
                                 P + "HEALTH_PROBES": "db=http://admin:pw123@db/health?token=qq"})
    assert cfg.token == "s3cr3t-token"
    text = repr(cfg)
    assert "s3cr3t" not in text and "pw123" not in text and "qq" not in text


@pytest.mark.parametrize(("url", "shown"), [
    ("http://user:pw@host:8080/p?a=1&password=x&sig=y", "http://host:8080/p?a=1&password=REDACTED&sig=REDACTED"),
    ("https://host/health", "https://host/health"),
    ("http://[::1]:9/x#frag", "http://[::1]:9/x"),
    ("http://h:bad/x", "<unparseable url>"),
])
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.parametrize(("field", "value"), [
    ("interval", 1e12), ("interval", 0), ("interval", -1), ("interval", float("nan")), ("interval", float("inf")),
    ("window", 86401), ("recovery_hold", 3601), ("recovery_hold", -0.5), ("probe_interval", 1e12),
    ("probe_timeout", 301), ("probe_slow", 1e12),
])
def test_out_of_range_durations_in_code_are_a_clear_error(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=rf"^HealthConfig\.{field}=.* is out of range: accepted a duration"):
        HealthConfig(**{field: value})  # type: ignore[arg-type]


def test_bounds_are_inclusive_and_zero_hold_is_allowed() -> None:
    HealthConfig(interval=3600, window=86400, recovery_hold=0, probe_interval=3600, probe_timeout=300,
                 probe_slow=300)
    with pytest.raises(ValueError, match="probe_slow"):
        HealthConfig(probe_timeout=1, probe_slow=2)


@pytest.mark.parametrize("suffix", ["HEALTH_INTERVAL", "HEALTH_WINDOW", "HEALTH_RECOVERY_HOLD",
                                    "HEALTH_PROBE_INTERVAL", "HEALTH_PROBE_TIMEOUT", "HEALTH_PROBE_SLOW"])
def test_1e12_from_the_environment_is_rejected_with_the_bound(suffix: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="otel_hardening"):
        cfg = HealthConfig.from_env({P + suffix: "1e12"})
    assert cfg == HealthConfig()
    (record,) = caplog.records
    assert f"{P}{suffix}='1e12'" in record.getMessage() and "<= " in record.getMessage()


def test_huge_values_never_kill_the_sampler_threads() -> None:
    """The largest accepted durations: every thread starts, waits and stops cleanly (no OverflowError)."""
    import threading

    from otel_hardening import health

    cfg = HealthConfig(interval=3600, window=86400, recovery_hold=3600, probe_interval=3600, probe_timeout=300,
                       probe_slow=300, probes=(Probe("db", "http://127.0.0.1:9/"),))
    failures: list[BaseException | None] = []
    previous = threading.excepthook
    threading.excepthook = lambda args: failures.append(args.exc_value)
    try:
        health.start(cfg)
        assert health._monitor is not None
        monitor = health._monitor
        report = health.report()
        assert report.status in tuple(health.Status)
        monitor.wake()  # the wait after a wake-up uses the huge interval too
        threading.Event().wait(0.2)
        assert monitor.alive() == (True, "the health sampler is evaluating")
        health.stop()
    finally:
        threading.excepthook = previous
    assert failures == []

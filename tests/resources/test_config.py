from __future__ import annotations

import logging
from pathlib import Path

import pytest

from otel_hardening.resources._probe import memory_limit
from otel_hardening.resources.config import ResourceConfig


def test_from_env_reads_every_setting() -> None:
    env = {
        "OTEL_PYTHON_HARDENING_RESOURCES": "off",
        "OTEL_PYTHON_HARDENING_RESOURCE_INTERVAL": "2.5",
        "OTEL_PYTHON_HARDENING_LEAK_WINDOW": "120",
        "OTEL_PYTHON_HARDENING_LEAK_WARMUP": "0",
        "OTEL_PYTHON_HARDENING_LEAK_MIN_MEMORY_RATE": "4096",
        "OTEL_PYTHON_HARDENING_LEAK_MIN_COUNT_GROWTH": "5",
        "OTEL_PYTHON_HARDENING_RESOURCE_USS": "no",
        "OTEL_PYTHON_HARDENING_LEAK_HUNT": "false",
        "OTEL_PYTHON_HARDENING_LEAK_HUNT_DURATION": "10",
        "OTEL_PYTHON_HARDENING_LEAK_HUNT_FRAMES": "1",
        "OTEL_PYTHON_HARDENING_LEAK_HUNT_TOP": "3",
        "OTEL_PYTHON_HARDENING_LEAK_HUNT_COOLDOWN": "60",
        "OTEL_PYTHON_HARDENING_LEAK_HUNT_MAX_MEMORY": "1000000",
    }
    assert ResourceConfig.from_env(env) == ResourceConfig(
        enabled=False, interval=2.5, leak_window=120.0, leak_warmup=0.0, leak_min_memory_rate=4096.0,
        leak_min_count_growth=5.0, uss=False, hunt_auto=False, hunt_duration=10.0, hunt_frames=1, hunt_top=3,
        hunt_cooldown=60.0, hunt_max_memory=1_000_000)
    assert ResourceConfig.from_env({}) == ResourceConfig()


def test_a_bad_value_logs_the_variable_and_falls_back(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="otel_hardening"):
        config = ResourceConfig.from_env({"OTEL_PYTHON_HARDENING_LEAK_WINDOW": "-5 minutes"})
    assert config.leak_window == ResourceConfig().leak_window
    (record,) = caplog.records
    assert "OTEL_PYTHON_HARDENING_LEAK_WINDOW" in record.getMessage()
    assert "-5 minutes" in record.getMessage() and "seconds" in record.getMessage()


def _cgroup(tmp_path: Path, proc: str, files: dict[str, str]) -> tuple[str, str]:
    for rel, text in files.items():
        path = tmp_path / "sys" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (tmp_path / "cgroup").write_text(proc)
    return str(tmp_path / "sys"), str(tmp_path / "cgroup")


def test_memory_limit_cgroup_v2_takes_the_tightest_ancestor(tmp_path: Path) -> None:
    root, proc = _cgroup(tmp_path, "0::/kubepods/pod1/c1\n", {
        "kubepods/pod1/c1/memory.max": "max\n",
        "kubepods/pod1/memory.max": "536870912\n",
        "kubepods/memory.max": "1073741824\n",
    })
    assert memory_limit(root, proc) == 536870912


def test_memory_limit_cgroup_v1_and_unlimited(tmp_path: Path) -> None:
    root, proc = _cgroup(tmp_path, "4:memory:/docker/abc\n2:cpu:/docker/abc\n", {
        "memory/docker/abc/memory.limit_in_bytes": "268435456\n",
        "memory/memory.limit_in_bytes": "9223372036854771712\n",
    })
    assert memory_limit(root, proc) == 268435456
    root, proc = _cgroup(tmp_path / "u", "4:memory:/\n", {"memory/memory.limit_in_bytes": "9223372036854771712\n"})
    assert memory_limit(root, proc) is None


def test_public_surface_is_sorted_and_complete() -> None:
    from otel_hardening import resources

    public = {name for name in vars(resources) if not name.startswith(("_", "@"))}  # "@": pytest rewrite aliases
    public -= {"annotations", "config", "logging", "os", "threading", "dataclass", "field", "Mapping",
               "MappingProxyType", "Any", "otel_context", "metrics", "log_once", "Sampler", "MAX_INTERVAL"}
    assert resources.__all__ == sorted(resources.__all__)
    assert set(resources.__all__) == public


@pytest.mark.parametrize(("field", "value"), [
    ("interval", 1e12), ("interval", 0), ("leak_window", 86401), ("leak_warmup", -1), ("leak_warmup", 1e12),
    ("hunt_duration", 3601), ("hunt_cooldown", float("inf")), ("interval", float("nan")),
])
def test_out_of_range_durations_in_code_are_a_clear_error(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=rf"^ResourceConfig\.{field}=.* is out of range: accepted a duration"):
        ResourceConfig(**{field: value})  # type: ignore[arg-type]


@pytest.mark.parametrize("suffix", ["RESOURCE_INTERVAL", "LEAK_WINDOW", "LEAK_WARMUP", "LEAK_HUNT_DURATION",
                                    "LEAK_HUNT_COOLDOWN"])
def test_1e12_from_the_environment_is_rejected(suffix: str, caplog: pytest.LogCaptureFixture) -> None:
    from otel_hardening._logging import _seen

    _seen.clear()
    with caplog.at_level(logging.ERROR, logger="otel_hardening"):
        assert ResourceConfig.from_env({"OTEL_PYTHON_HARDENING_" + suffix: "1e12"}) == ResourceConfig()
    assert "OTEL_PYTHON_HARDENING_" + suffix in caplog.text


def test_the_largest_accepted_durations_never_kill_the_sampler() -> None:
    import threading

    from otel_hardening import resources

    failures: list[BaseException | None] = []
    previous = threading.excepthook
    threading.excepthook = lambda args: failures.append(args.exc_value)
    try:
        resources.start(ResourceConfig(interval=3600, leak_window=86400, leak_warmup=86400, hunt_duration=3600,
                                       hunt_cooldown=86400))
        threading.Event().wait(0.3)
        snap = resources.snapshot()
        assert snap is not None and snap.sampler_alive
        resources.stop()
    finally:
        threading.excepthook = previous
    assert failures == []

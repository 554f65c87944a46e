from __future__ import annotations

from otel_hardening import health


def test_all_is_sorted_and_complete() -> None:
    assert health.__all__ == sorted(health.__all__)
    # "@py_builtins"/"@pytest_ar": pytest rewrites the asserts of a package that ships a pytest plugin
    public = {n for n in dir(health) if not n.startswith(("_", "@"))} - {"annotations", "logging", "threading",
                                                                  "log_once", "logger", "config", "time", "os",
                                                                  "TYPE_CHECKING"}
    assert public == set(health.__all__)

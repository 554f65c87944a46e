import types

import otel_hardening


def test_all_is_sorted_and_complete() -> None:
    """Every public name the package defines is in __all__ (imports and subpackages are not)."""
    defined = {
        name for name, value in vars(otel_hardening).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
        and str(getattr(value, "__module__", "")).startswith("otel_hardening")
    }
    assert otel_hardening.__all__ == sorted(otel_hardening.__all__)
    assert set(otel_hardening.__all__) == defined | {"__version__"}

import types

from otel_hardening import outbox


def test_all_is_complete() -> None:
    defined = {name for name, value in vars(outbox).items()
               if not name.startswith("_") and not isinstance(value, types.ModuleType)
               and str(getattr(value, "__module__", "otel_hardening")).startswith("otel_hardening")}
    assert len(outbox.__all__) == len(set(outbox.__all__))  # the order is ruff's (RUF022)
    assert set(outbox.__all__) == defined | {"EXTENSION", "IDEMPOTENCY_KEY"}


def test_policy_errors_name_the_setting_and_what_is_accepted() -> None:
    import pytest

    with pytest.raises(ValueError, match=r"OutboxPolicy.max_entries=0: accepted a whole number >= 1"):
        outbox.OutboxPolicy(max_entries=0)
    with pytest.raises(ValueError, match=r"OutboxPolicy.defer_statuses=\{200\}: accepted a set of 4xx/5xx"):
        outbox.OutboxPolicy(defer_statuses={200})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"Outbox\(name='a b'\): accepted 1-64 letters"):
        outbox.Outbox("", name="a b", before_replay=lambda r: r)
    with pytest.raises(ValueError, match=r"outbox store ftp://\.\.\.: accepted a file path"):
        outbox.open_store("ftp://x/y")

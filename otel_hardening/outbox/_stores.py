"""Opening a store from its URL: a file path (SQLite) or ``redis://`` / ``rediss://`` / ``unix://``."""

from __future__ import annotations

from otel_hardening.outbox._errors import ConfigurationError
from otel_hardening.outbox._model import Store
from otel_hardening.outbox._policy import default_path

_REDIS = ("redis://", "rediss://", "unix://")


def open_store(url: str = "", *, name: str = "app", max_entries: int = 10_000,
               max_bytes: int = 64 * 1024 * 1024) -> Store:
    """``""`` is the default SQLite file (``$XDG_STATE_HOME/otel-hardening/<name>.outbox.sqlite3``);
    ``sqlite:///abs/path`` or a plain path is a SQLite file; a Redis URL is the shared store."""
    if not isinstance(url, str):
        raise ConfigurationError(f"outbox store {url!r}: accepted a file path, sqlite:///path or redis://host:port/db")
    if url.startswith(_REDIS):
        from otel_hardening.outbox._redis import RedisStore

        return RedisStore(url, name, max_entries, max_bytes)
    if "://" in url and not url.startswith("sqlite://"):
        raise ConfigurationError(f"outbox store {url.split('://')[0]}://...: accepted a file path, "
                                 "sqlite:///path or redis://host:port/db")
    from otel_hardening.outbox._sqlite import SqliteStore

    path = url.removeprefix("sqlite://") or str(default_path(name))
    return SqliteStore(path, max_entries, max_bytes)

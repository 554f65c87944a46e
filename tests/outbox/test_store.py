"""Both stores against real backends: order, claims, bounds, dead letters, errors that name the cause."""

from __future__ import annotations

import os
import sqlite3
import stat
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from otel_hardening.outbox import Entry, Store, StoreError, StoreFull, open_store
from otel_hardening.outbox._model import new_id
from otel_hardening.testing._upstream import closed_port

MakeStore = Callable[..., Store]


def entry(n: int, upstream: str = "http://a:80", size: int = 10) -> Entry:
    return Entry(new_id(), upstream, "POST", f"http://a/w/{n}", (("content-type", "text/plain"),),
                 b"%d" % n + b"x" * (size - len(b"%d" % n)), time.time())


def test_queue_is_ordered_per_upstream_and_acked_entries_are_gone(make_store: MakeStore) -> None:
    store = make_store()
    for n in range(5):
        store.put(entry(n))
        store.put(entry(100 + n, "http://b:80"))
    assert sorted(store.upstreams()) == ["http://a:80", "http://b:80"]
    seen = []
    while batch := store.claim("http://a:80", 2, 30):
        for e in batch:
            seen.append(e.body[:1])
            store.ack(e)
        store.finish("http://a:80")
    assert seen == [b"0", b"1", b"2", b"3", b"4"]
    assert store.upstreams() == ["http://b:80"]
    stats = store.stats()
    assert (stats.pending, stats.dead) == (5, 0)


def test_a_claim_is_exclusive_until_it_expires(make_store: MakeStore) -> None:
    store, other = make_store(), make_store()
    store.put(entry(1))
    store.put(entry(2))
    mine = store.claim("http://a:80", 1, 0.5, consumer="one")
    assert [e.body[:1] for e in mine] == [b"1"]
    assert other.claim("http://a:80", 1, 30, consumer="two") == []  # nothing overtakes the claimed head
    time.sleep(0.7)  # the first consumer died: its claim expires and the head is handed out again
    again = other.claim("http://a:80", 1, 30, consumer="two")
    assert [e.id for e in again] == [mine[0].id]


def test_backoff_holds_the_head_and_everything_behind_it(make_store: MakeStore) -> None:
    store = make_store()
    store.put(entry(1))
    store.put(entry(2))
    head = store.claim("http://a:80", 1, 30)[0]
    store.release(head.failed("HTTP 503", time.time() + 60))
    store.finish("http://a:80")
    assert store.claim("http://a:80", 2, 30) == []
    retried = store.claim("http://a:80", 2, 30, ignore_schedule=True)  # the circuit closed: go now
    assert [e.body[:1] for e in retried] == [b"1", b"2"]
    assert (retried[0].attempts, retried[0].last_error) == (1, "HTTP 503")


def test_full_store_refuses_and_keeps_what_it_has(make_store: MakeStore) -> None:
    store = make_store(max_entries=3, max_bytes=10_000)
    kept = [entry(n) for n in range(3)]
    for e in kept:
        store.put(e)
    with pytest.raises(StoreFull, match=r"is full: 3 entries stored \(max_entries=3\)"):
        store.put(entry(9))
    assert [e.id for e in store.entries(dead=False)] == [e.id for e in kept]
    by_bytes = make_store(max_entries=100, max_bytes=2_000)
    by_bytes.purge(dead=False)
    by_bytes.put(entry(1, size=1_000))
    with pytest.raises(StoreFull, match="would exceed max_bytes=2000"):
        by_bytes.put(entry(2, size=1_000))


def test_dead_letters_retry_and_purge(make_store: MakeStore) -> None:
    store = make_store()
    for n in range(3):
        store.put(entry(n))
    head = store.claim("http://a:80", 1, 30)[0]
    store.bury(head.failed("HTTP 422", 0), "rejected")
    store.finish("http://a:80")
    stats = store.stats()
    assert (stats.pending, stats.dead) == (2, 1)
    dead = store.entries(dead=True)
    assert [(e.id, e.dead_reason, e.last_error, e.attempts) for e in dead] == [(head.id, "rejected", "HTTP 422", 1)]
    assert store.retry_dead() == 1
    assert store.stats().dead == 0
    order = [e.body[:1] for e in store.claim("http://a:80", 3, 30)]
    assert order == [b"1", b"2", b"0"]  # back at the end of its queue
    got = store.get(head.id)
    assert got is not None and got.attempts == 0 and got.body == head.body and got.headers == head.headers
    assert store.purge([head.id]) == 1 and store.get(head.id) is None
    assert store.purge(dead=False) == 2 and store.stats().pending == 0


def test_sqlite_file_is_private_and_durable(tmp_path: Path) -> None:
    path = tmp_path / "state" / "app.outbox.sqlite3"
    store = open_store(str(path))
    store.put(entry(1))
    for name in (path, Path(f"{path}-wal")):
        assert stat.S_IMODE(os.stat(name).st_mode) == 0o600, name
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] == 1
    db.close()
    store.close()
    assert open_store(str(path)).stats().pending == 1


def test_sqlite_newer_schema_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "x.sqlite3"
    open_store(str(path)).close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version=7")
    db.close()
    with pytest.raises(StoreError, match=r"schema version 7 was written by a newer otel-hardening"):
        open_store(str(path))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes read-only files")
def test_unwritable_sqlite_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "ro.sqlite3"
    store = open_store(str(path))
    store.put(entry(1))
    store.close()
    os.chmod(path, 0o400)
    store = open_store(str(path))
    with pytest.raises(StoreError, match=f"outbox store {path}: attempt to write a readonly database"):
        store.put(entry(2))
    assert store.stats().pending == 1


def test_unwritable_directory_names_the_path(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match=f"outbox store {blocker}/sub/x.sqlite3: .*NotADirectoryError|FileExists"):
        open_store(str(blocker / "sub" / "x.sqlite3"))


@pytest.mark.redis
def test_redis_down_names_the_server_without_its_password() -> None:
    with pytest.raises(StoreError) as caught:
        open_store(f"redis://:hunter2@127.0.0.1:{closed_port()}/0")
    assert "hunter2" not in str(caught.value)
    assert "redis://127.0.0.1:" in str(caught.value) and "ConnectionError" in str(caught.value)


@pytest.mark.redis
def test_redis_dying_keeps_what_was_stored(redis_server) -> None:  # type: ignore[no-untyped-def]
    redis_server.stop()
    redis_server.start(appendonly=True)
    store = open_store(redis_server.url, name="t")
    kept = entry(1)
    store.put(kept)
    redis_server.stop()
    with pytest.raises(StoreError, match=r"outbox store redis://127\.0\.0\.1:\d+/0: .*Error"):
        store.put(entry(2))
    redis_server.start(appendonly=True)
    assert [e.id for e in store.entries(dead=False)] == [kept.id]


def test_a_directory_in_place_of_the_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "taken.sqlite3"
    path.mkdir()
    with pytest.raises(StoreError, match=f"outbox store {path}: .*IsADirectoryError"):
        open_store(str(path))

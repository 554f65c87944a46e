"""The embedded store: one SQLite file per application (standard library only).

Durability: WAL journal with ``synchronous=FULL``, so a committed deferral survives SIGKILL and power
loss; every change is one transaction, so a process killed at any moment leaves the file either
before or after it. Several processes of one app may share the file: claims are rows with an expiry.
The file is created 0600 (SQLite gives its -wal/-shm files the database's mode): it holds credentials.

Fork: SQLite's own mutexes (its allocator's among them) are copied locked into a child forked while
another thread is inside SQLite, and the child's first ``connect`` then hangs for ever. Every call
into SQLite here holds the store's lock, and a fork waits for all of them (``os.register_at_fork``).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from otel_hardening.outbox._errors import StoreError, StoreFull
from otel_hardening.outbox._model import CONSUMER, Entry, Stats, Store

T = TypeVar("T")

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    upstream TEXT NOT NULL,
    created REAL NOT NULL,
    next_at REAL NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    dead_reason TEXT NOT NULL DEFAULT '',
    claimed_by TEXT NOT NULL DEFAULT '',
    claimed_until REAL NOT NULL DEFAULT 0,
    size INTEGER NOT NULL,
    record TEXT NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_queue ON entries (upstream, dead_reason, seq);
"""
_COLUMNS = "id, upstream, record, body, created, attempts, next_at, last_error, dead_reason"
_BUSY_TIMEOUT_MS = 5000


def _entry(row: Any) -> Entry:
    id, upstream, record, body, created, attempts, next_at, last_error, dead_reason = row
    return Entry.from_record(str(id), str(upstream), str(record), bytes(body), float(created),
                             int(attempts), float(next_at), str(last_error), str(dead_reason))


class SqliteStore(Store):
    def __init__(self, path: str | os.PathLike[str], max_entries: int = 10_000,
                 max_bytes: int = 64 * 1024 * 1024) -> None:
        self.path = Path(path)
        self.location = str(self.path)
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._inherited: list[sqlite3.Connection] = []
        _stores.add(self)
        self._run(lambda db: None)  # open now: a bad path is a configuration error at start, not later

    # --- connection -----------------------------------------------------------------------
    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                             timeout=_BUSY_TIMEOUT_MS / 1000)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise StoreError(f"outbox store {self.location}: schema version {version} was written by a "
                                 f"newer otel-hardening (this one reads {SCHEMA_VERSION})")
            if version < SCHEMA_VERSION:
                db.executescript(_SCHEMA)  # IF NOT EXISTS: processes racing to create it agree
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except BaseException:
            db.close()
            raise
        return db

    def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            try:
                if self._conn is None:
                    self._conn = self._open()
                return work(self._conn)
            except StoreError:
                raise
            except (sqlite3.Error, OSError) as exc:
                raise StoreError(f"outbox store {self.location}: {_cause(exc)}") from None

    @contextmanager
    def _tx(self, db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def after_fork(self) -> None:
        # The parent's connection must be neither used nor closed here (closing could checkpoint
        # the parent's WAL): it is kept referenced and forgotten.
        if self._conn is not None:
            self._inherited.append(self._conn)
        self._conn = None
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # --- queue ----------------------------------------------------------------------------
    def put(self, entry: Entry) -> None:
        size = entry.size

        def work(db: sqlite3.Connection) -> None:
            with self._tx(db):
                count, total = db.execute("SELECT count(*), coalesce(sum(size), 0) FROM entries").fetchone()
                if count + 1 > self.max_entries:
                    raise StoreFull(f"outbox store {self.location} is full: {count} entries stored "
                                    f"(max_entries={self.max_entries})")
                if total + size > self.max_bytes:
                    raise StoreFull(f"outbox store {self.location} is full: {total} + {size} bytes would "
                                    f"exceed max_bytes={self.max_bytes}")
                db.execute("INSERT INTO entries (id, upstream, created, next_at, size, record, body) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?)",
                           (entry.id, entry.upstream, entry.created, entry.next_at, size, entry.record(),
                            entry.body))

        self._run(work)

    def claim(self, upstream: str, limit: int, visibility: float, *, consumer: str = CONSUMER,
              ignore_schedule: bool = False) -> list[Entry]:
        def work(db: sqlite3.Connection) -> list[Entry]:
            now = time.time()
            with self._tx(db):
                rows = db.execute(f"SELECT {_COLUMNS}, claimed_until FROM entries WHERE upstream = ? AND "
                                  "dead_reason = '' ORDER BY seq LIMIT ?", (upstream, limit)).fetchall()
                taken: list[Entry] = []
                for row in rows:
                    if row[-1] > now or (not ignore_schedule and row[6] > now):
                        break  # in flight or not due: nothing behind it may overtake it
                    taken.append(_entry(row[:-1]))
                db.executemany("UPDATE entries SET claimed_by = ?, claimed_until = ? WHERE id = ?",
                               [(consumer, now + visibility, e.id) for e in taken])
            return taken

        return self._run(work)

    def ack(self, entry: Entry, consumer: str = CONSUMER) -> None:
        self._run(lambda db: db.execute("DELETE FROM entries WHERE id = ?", (entry.id,)))

    def release(self, entry: Entry, consumer: str = CONSUMER) -> None:
        self._run(lambda db: db.execute(
            "UPDATE entries SET attempts = ?, next_at = ?, last_error = ?, claimed_by = '', claimed_until = 0 "
            "WHERE id = ? AND claimed_by = ?", (entry.attempts, entry.next_at, entry.last_error, entry.id, consumer)))

    def bury(self, entry: Entry, reason: str, consumer: str | None = CONSUMER) -> None:
        self._run(lambda db: db.execute(
            "UPDATE entries SET dead_reason = ?, attempts = ?, last_error = ?, claimed_by = '', claimed_until = 0 "
            "WHERE id = ? AND dead_reason = ''", (reason or "dead", entry.attempts, entry.last_error, entry.id)))

    # --- inspection and operations ----------------------------------------------------------
    def upstreams(self) -> list[str]:
        return self._run(lambda db: [str(r[0]) for r in db.execute(
            "SELECT DISTINCT upstream FROM entries WHERE dead_reason = ''")])

    def stats(self) -> Stats:
        def work(db: sqlite3.Connection) -> Stats:
            pending = db.execute("SELECT count(*), coalesce(sum(size), 0), min(created) FROM entries "
                                 "WHERE dead_reason = ''").fetchone()
            dead = db.execute("SELECT count(*), coalesce(sum(size), 0) FROM entries "
                              "WHERE dead_reason != ''").fetchone()
            return Stats(int(pending[0]), int(pending[1]), pending[2], int(dead[0]), int(dead[1]))

        return self._run(work)

    def entries(self, *, dead: bool, limit: int = 100) -> list[Entry]:
        where = "dead_reason != ''" if dead else "dead_reason = ''"
        return self._run(lambda db: [_entry(r) for r in db.execute(
            f"SELECT {_COLUMNS} FROM entries WHERE {where} ORDER BY seq LIMIT ?", (limit,))])

    def get(self, id: str) -> Entry | None:
        row = self._run(lambda db: db.execute(f"SELECT {_COLUMNS} FROM entries WHERE id = ?", (id,)).fetchone())
        return None if row is None else _entry(row)

    def retry_dead(self, ids: Sequence[str] | None = None) -> int:
        def work(db: sqlite3.Connection) -> int:
            with self._tx(db):
                query = "SELECT seq FROM entries WHERE dead_reason != ''"
                args: list[str] = []
                if ids is not None:
                    query += f" AND id IN ({','.join('?' * len(ids))})"
                    args = list(ids)
                seqs = [r[0] for r in db.execute(query + " ORDER BY seq", args)]
                for seq in seqs:  # to the end of its queue, in the order they were deferred
                    db.execute("UPDATE entries SET seq = (SELECT max(seq) + 1 FROM entries), dead_reason = '', "
                               "attempts = 0, next_at = 0, claimed_by = '', claimed_until = 0 WHERE seq = ?",
                               (seq,))
                return len(seqs)

        return self._run(work)

    def reschedule(self, ids: Sequence[str] | None = None) -> int:
        query, args = "UPDATE entries SET next_at = 0 WHERE dead_reason = ''", []
        if ids is not None:
            query += f" AND id IN ({','.join('?' * len(ids))})"
            args = list(ids)
        return self._run(lambda db: int(db.execute(query, args).rowcount))

    def purge(self, ids: Sequence[str] | None = None, *, dead: bool = True) -> int:
        def work(db: sqlite3.Connection) -> int:
            if ids is not None:
                cur = db.execute(f"DELETE FROM entries WHERE id IN ({','.join('?' * len(ids))})", list(ids))
            elif dead:
                cur = db.execute("DELETE FROM entries WHERE dead_reason != ''")
            else:
                cur = db.execute("DELETE FROM entries")
            return int(cur.rowcount)

        return self._run(work)


def _cause(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc} ({type(exc).__name__})"
    return str(exc) or type(exc).__name__


_stores: weakref.WeakSet[SqliteStore] = weakref.WeakSet()
_held: list[SqliteStore] = []


def _before_fork() -> None:
    """No thread of ours is inside SQLite while the process forks."""
    for store in sorted(_stores, key=id):
        store._lock.acquire()
        _held.append(store)


def _after_fork_in_parent() -> None:
    while _held:
        _held.pop()._lock.release()


def _after_fork_in_child() -> None:
    while _held:
        _held.pop().after_fork()  # a new lock, no inherited connection


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                        after_in_child=_after_fork_in_child)


"""SIGKILL at any moment loses nothing: a subprocess app killed again and again while it defers and
while it replays; the ledger upstream applies each write once (by Idempotency-Key).
Two processes replaying one Redis store: each entry is sent by exactly one of them."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from otel_hardening.outbox import Entry, open_store
from otel_hardening.outbox._model import new_id
from otel_hardening.testing import Reply
from otel_hardening.testing._upstream import ReceivedRequest
from tests.outbox.conftest import Ledger

ROOT = Path(__file__).resolve().parents[2]
KILLS = 5


def spawn(mode: str, store: str, url: str, start: int = 0) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "tests.outbox._app", mode, store, url, str(start)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def kill(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGKILL)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL, f"the app ended by itself ({proc.returncode}): {err[-2000:]}"
    return out


def slowly(rule: Callable[[ReceivedRequest], Reply], delay: float) -> Callable[[ReceivedRequest], Reply]:
    def answer(request: ReceivedRequest) -> Reply:
        time.sleep(delay)
        return rule(request)

    return answer


def fill(store_url: str, url: str, count: int) -> list[bytes]:
    store = open_store(store_url, name="crash")
    bodies = [b"w-%06d" % n for n in range(count)]
    for body in bodies:
        store.put(Entry(new_id(), url.replace("http://", "http://"), "POST", f"{url}/w",
                        (("idempotency-key", f"key-{body.decode()}"),), body, time.time()))
    store.close()
    return bodies


def test_sigkill_during_enqueue_loses_nothing(store_url: str, ledger: Ledger) -> None:
    ledger.down = True
    reported: dict[str, int] = {}
    start = 0
    for _ in range(KILLS):
        proc = spawn("enqueue", store_url, ledger.url, start)
        assert proc.stdout is not None
        first = proc.stdout.readline()  # it is deferring
        assert first, f"the app deferred nothing: {kill(proc)}"
        time.sleep(random.uniform(0.05, 0.4))
        out = first + kill(proc)
        for line in out.splitlines():
            n, id = line.split()  # each line is one write(2) (_app.py): a kill never cuts one
            reported[id] = int(n)
        start = max(reported.values()) + 1000
    store = open_store(store_url, name="crash")
    entries = store.entries(dead=False, limit=100_000)
    stored = {e.id for e in entries}
    assert store.stats().dead == 0
    assert set(reported) <= stored, f"lost: {set(reported) - stored}"  # every deferral the app saw is there
    ledger.down = False
    proc = spawn("replay", store_url, ledger.url)
    try:
        deadline = time.monotonic() + 60
        while store.stats().pending and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        kill(proc)
    assert store.stats().pending == 0, f"{store.stats()} after 60 s"
    assert len(ledger.applied) == len(set(ledger.applied))  # each write applied once
    assert {e.body for e in entries} <= set(ledger.applied)  # every stored write delivered
    # A write in flight when its app was killed may reach the upstream once it is back: applied, never
    # stored (the app died before it could defer it). At most one per kill.
    assert len(ledger.applied) - len(stored) <= KILLS
    assert ledger.missing_key == 0


def test_sigkill_during_replay_applies_each_write_once(store_url: str, ledger: Ledger) -> None:
    bodies = fill(store_url, ledger.url, 150)
    store = open_store(store_url, name="crash")
    ledger.server.rule = slowly(ledger._rule, 0.02)
    kills = 0
    deadline = time.monotonic() + 120
    while store.stats().pending and time.monotonic() < deadline:
        hits = ledger.server.hits
        proc = spawn("replay", store_url, ledger.url)
        if kills < KILLS:
            while ledger.server.hits == hits and time.monotonic() < deadline:
                time.sleep(0.005)  # killed only once it is replaying
            time.sleep(random.uniform(0.0, 0.3))
            kill(proc)
            kills += 1
        else:
            while store.stats().pending and time.monotonic() < deadline:
                time.sleep(0.1)
            kill(proc)
    assert store.stats().pending == 0 and store.stats().dead == 0
    assert ledger.applied == bodies  # each once, in order, though replays were cut short
    assert kills == KILLS


@pytest.mark.redis
def test_two_processes_share_a_redis_store_each_entry_sent_once(redis_server: object) -> None:
    ledgers = [Ledger() for _ in range(4)]
    try:
        url = redis_server.url  # type: ignore[attr-defined]
        expected = {}
        for ledger in ledgers:
            ledger.server.rule = slowly(ledger._rule, 0.005)
            expected[ledger.url] = fill(url, ledger.url, 25)
        store = open_store(url, name="crash")
        procs = [spawn("replay", url, ledgers[0].url) for _ in range(2)]
        try:
            deadline = time.monotonic() + 60
            while store.stats().pending and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            for proc in procs:
                kill(proc)
        assert store.stats().pending == 0
        for ledger in ledgers:
            assert ledger.applied == expected[ledger.url]
            assert ledger.duplicates == 0 and ledger.server.count("/w") == 25  # sent once: no second sender
    finally:
        for ledger in ledgers:
            ledger.close()


def test_fork_inherits_no_replayer_and_never_hangs(tmp_path: Path) -> None:
    """Forks while another thread is inside SQLite (the replayer, a stats reader): every child gets
    its own thread and connection and finishes; none hangs on a mutex copied locked."""
    import threading

    from otel_hardening.outbox import Outbox, OutboxPolicy

    outbox = Outbox(str(tmp_path / "f.sqlite3"), policy=OutboxPolicy(strip_headers=frozenset(), poll=0.01),
                    name="fork")
    outbox.start()
    stop = threading.Event()

    def busy() -> None:
        while not stop.is_set():
            outbox.store.stats()

    reader = threading.Thread(target=busy, daemon=True)
    reader.start()
    try:
        for _ in range(20):
            read, write = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child: no thread of the parent's; a fresh one starts on demand
                try:
                    inherited = outbox.replayer._thread is None
                    outbox.start()
                    thread = outbox.replayer._thread
                    started = thread is not None and thread.is_alive()
                    outbox.store.stats()  # its own connection
                    os.write(write, b"%d%d" % (inherited, started))
                finally:
                    os._exit(0)
            os.close(write)
            deadline = time.monotonic() + 20
            while os.waitpid(pid, os.WNOHANG) == (0, 0):
                if time.monotonic() > deadline:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    raise AssertionError("a forked child hung")
                time.sleep(0.01)
            assert os.read(read, 2) == b"11"
            os.close(read)
    finally:
        stop.set()
        reader.join(5)
        outbox.close()

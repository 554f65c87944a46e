"""Fixtures of the outbox tests: real SQLite files, a real redis-server, a ledger upstream that applies
each Idempotency-Key once."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from otel_hardening.outbox import Store, open_store
from otel_hardening.testing import FlakyUpstream, Reply
from otel_hardening.testing._upstream import ReceivedRequest, closed_port


class RedisServer:
    def __init__(self, tmp: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed (apt-get install redis-server); outbox Redis tests skipped")
        self.binary, self.tmp = binary, tmp
        self.port = closed_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self, appendonly: bool = False) -> None:
        """``appendonly``: durable (``appendfsync always``), and a restart reads back what was stored."""
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if appendonly else ["--appendonly", "no"]
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", *persistence,
             "--dir", str(self.tmp)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        client = redis.Redis(port=self.port)
        for _ in range(200):
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(5)
            self.proc = None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "redis":
        return str(request.getfixturevalue("redis_server").url)
    return str(tmp_path / "app.outbox.sqlite3")


@pytest.fixture
def make_store(store_url: str) -> Iterator[type[Store] | object]:
    made: list[Store] = []

    def make(**kw: int) -> Store:
        store = open_store(store_url, name="t", **kw)
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


class Ledger:
    """An upstream that applies each write once per Idempotency-Key, like a payment API: a repeated key
    gets the first answer again and is counted in ``duplicates``. ``down`` answers 503."""

    def __init__(self) -> None:
        self.down = False
        self.applied: list[bytes] = []
        self.keys: set[str] = set()
        self.duplicates = 0
        self.missing_key = 0
        self.times: list[float] = []
        self._lock = threading.Lock()
        self.server = FlakyUpstream()
        self.server.rule = self._rule
        self.url = self.server.url

    def _rule(self, request: ReceivedRequest) -> Reply:
        if self.down:
            return Reply(503)
        headers = {k.lower(): v for k, v in request.headers.items()}
        key = headers.get("idempotency-key")
        if len(request.body) != int(headers.get("content-length") or 0):
            return Reply(400, b"truncated body")  # its sender died mid-request: a server applies nothing
        with self._lock:
            if key is None:
                self.missing_key += 1
                return Reply(400, b"no Idempotency-Key")
            if key in self.keys:
                self.duplicates += 1
                return Reply(200, b"already applied")
            self.keys.add(key)
            self.applied.append(request.body)
            self.times.append(time.monotonic())
        return Reply(201, b"applied")

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def ledger() -> Iterator[Ledger]:
    upstream = Ledger()
    yield upstream
    upstream.close()


@pytest.fixture(autouse=True)
def _no_outbox_outlives_its_test() -> Iterator[None]:
    """Health names the component ``outbox`` while a process has one outbox and ``outbox:<name>`` with
    several: an outbox a test left open would rename the next test's components."""
    yield
    from otel_hardening.outbox import _health

    for outbox in list(_health._live):
        outbox.close()

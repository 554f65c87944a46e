from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import httpx
import pytest

from otel_hardening import health
from otel_hardening.health import HealthConfig, Status
from otel_hardening.health._endpoint import MAX_CONNECTIONS, HealthServer
from otel_hardening.health._runtime import Monitor
from tests.health.conftest import Snap


class Env:
    def __init__(self, **cfg: object) -> None:
        self.state = "closed"
        base: dict[str, object] = {"endpoint": ("127.0.0.1", 0), "recovery_hold": 0.0}
        base.update(cfg)
        self.config = HealthConfig(**base)  # type: ignore[arg-type]
        self.monitor = Monitor(self.config, upstreams=lambda: [Snap("http://api:80", "api", self.state)],
                               resources=lambda: None, on_change=lambda p, r: None)
        self.server = HealthServer(self.config, self.monitor.evaluate, self.monitor.alive, self.monitor.ready)
        self.server.start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

    def get(self, path: str, **headers: str) -> httpx.Response:
        return httpx.get(self.base + path, headers=headers, timeout=5)

    def raw(self, data: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", self.server.server_address[1]), timeout=5) as s:
            s.sendall(data)
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks)


@pytest.fixture
def make_env() -> Iterator[type[Env]]:
    made: list[Env] = []

    class Made(Env):
        def __init__(self, **cfg: object) -> None:
            super().__init__(**cfg)
            made.append(self)

    yield Made
    for env in made:
        env.server.stop()


@pytest.mark.parametrize(("state", "word", "code"), [("closed", "pass", 200), ("half_open", "warn", 200),
                                                     ("open", "fail", 503)])
def test_healthz_status_and_code(make_env: type[Env], state: str, word: str, code: int) -> None:
    env = make_env()
    env.state = state
    r = env.get("/healthz")
    assert r.status_code == code
    assert r.headers["content-type"] == "application/health+json"
    assert r.headers["cache-control"] == "no-store"
    assert r.json() == {"status": word, "description": "otel-hardening process health"}


def test_details_always_ietf_format(make_env: type[Env]) -> None:
    env = make_env(details="always")
    env.state = "half_open"
    doc = env.get("/healthz").json()
    assert doc["status"] == "warn"
    assert doc["output"] == "http://api:80:circuit: circuit half-open: trial requests only"
    circuit = doc["checks"]["http://api:80:circuit"]
    assert isinstance(circuit, list) and len(circuit) == 1
    entry = circuit[0]
    assert entry["status"] == "warn" and entry["componentType"] == "component"
    assert entry["observedValue"] == "half_open" and entry["output"].startswith("circuit half-open")
    assert entry["time"].endswith("Z")
    assert doc["checks"]["telemetry:export"][0]["status"] == "pass"
    assert "output" not in doc["checks"]["telemetry:export"][0]  # the draft: omit output on pass
    assert set(doc["checks"]) >= {"http://api:80:retries", "http://api:80:errors"}


def test_details_need_the_token(make_env: type[Env]) -> None:
    env = make_env(token="t0p-secret", required=frozenset({"api"}))
    env.state = "open"
    assert "checks" not in env.get("/healthz").json()
    assert "checks" not in env.get("/healthz", Authorization="Bearer wrong").json()
    assert "checks" not in env.get("/healthz", Authorization="Bearer t0p-secret-but-longer").json()
    assert "checks" not in env.get("/healthz", Authorization="Basic t0p-secret").json()
    r = env.get("/healthz", Authorization="Bearer t0p-secret")
    assert r.status_code == 503 and "checks" in r.json()
    assert "t0p-secret" not in r.text
    assert "output" in env.get("/readyz", Authorization="Bearer t0p-secret").json()
    assert "output" not in env.get("/readyz").json()


def test_details_never_ignores_the_token(make_env: type[Env]) -> None:
    env = make_env(token="tok", details="never")
    assert "checks" not in env.get("/healthz", Authorization="Bearer tok").json()


def test_no_token_configured_means_no_details(make_env: type[Env]) -> None:
    env = make_env()
    assert "checks" not in env.get("/healthz", Authorization="Bearer x").json()
    answer = env.raw(b"GET /healthz HTTP/1.1\r\nAuthorization: Bearer\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200") and b"checks" not in answer


@pytest.mark.parametrize("state", ["closed", "half_open", "open"])
def test_readyz_ignores_an_optional_dependency(make_env: type[Env], state: str) -> None:
    env = make_env()
    env.state = state
    r = env.get("/readyz")
    assert r.status_code == 200 and r.json()["status"] == "pass"
    assert env.get("/healthz").status_code == (503 if state == "open" else 200)  # status still says it


@pytest.mark.parametrize(("required", "code"), [("api", 503), ("http://api:80", 503), ("other", 200)])
def test_readyz_fails_when_a_required_dependency_is_down(make_env: type[Env], required: str, code: int) -> None:
    env = make_env(required=frozenset({required}), details="always")
    env.state = "open"
    r = env.get("/readyz")
    assert r.status_code == code
    if code == 503:
        assert r.json() == {"status": "fail", "output": "http://api:80:circuit: circuit open: calls are rejected"}
    assert env.get("/livez").status_code == 200


def test_livez_ignores_dependencies_but_fails_when_sampler_is_dead(make_env: type[Env]) -> None:
    env = make_env(interval=0.05)
    env.state = "open"
    env.monitor.start()
    try:
        assert env.get("/livez").status_code == 200
        env.monitor._stop.set()  # the sampler thread ends, as if it had died
        assert env.monitor._thread is not None
        env.monitor._thread.join(5)
        r = env.get("/livez")
        assert r.status_code == 503 and r.json() == {"status": "fail"}
        assert env.get("/readyz").status_code == 503  # its answers would be stale: not ready either
    finally:
        env.monitor.stop()


def test_head_and_query_string(make_env: type[Env]) -> None:
    env = make_env()
    r = httpx.head(env.base + "/healthz?verbose=1", timeout=5)
    assert r.status_code == 200 and r.content == b"" and int(r.headers["content-length"]) > 0


def test_unknown_path_and_methods(make_env: type[Env]) -> None:
    env = make_env()
    assert env.get("/").status_code == 404
    assert env.get("/healthz/../etc/passwd").status_code == 404
    r = httpx.post(env.base + "/healthz", content=b"x" * 10000, timeout=5)
    assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"


@pytest.mark.parametrize(("garbage", "status"), [
    (b"\x00\xff\xfe garbage\r\n\r\n", b"400"),
    (b"GET\r\n\r\n", b"400"),
    (b"GET /healthz HTTP/9.9\r\n\r\n", b"505"),
    (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", b"414"),
    (b"GET /healthz HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(150)) + b"\r\n", b"431"),
    (b"GET /healthz HTTP/1.1\r\nAuthorization: Bearer \xff\xfe\r\n\r\n", b"200"),  # no details
])
def test_malformed_requests_get_4xx_and_the_server_survives(make_env: type[Env], garbage: bytes,
                                                            status: bytes,
                                                            capfd: pytest.CaptureFixture[str]) -> None:
    env = make_env(token="tok")
    answer = env.raw(garbage)
    status_line = answer.split(b"\r\n", 1)[0]
    assert status_line.split(b" ")[:2] == [b"HTTP/1.1", status]
    assert b"\xff" not in answer and b"checks" not in answer  # input is not echoed; no details
    assert env.get("/healthz").status_code == 200
    out, err = capfd.readouterr()
    assert "Traceback" not in err and "Traceback" not in out


def test_a_full_house_of_idle_connections_makes_room_for_a_probe(make_env: type[Env]) -> None:
    env = make_env()
    port = env.server.server_address[1]
    idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(MAX_CONNECTIONS + 10)]
    try:
        for s in idle:
            s.sendall(b"GET /hea")  # half a request each
        for _ in range(5):
            assert env.raw(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 200")
        assert len(env.server._conns) <= MAX_CONNECTIONS
        assert env.server.evicted >= 10
        idle[0].settimeout(2)
        with contextlib.suppress(ConnectionResetError):  # closed with unread request bytes: a reset
            assert idle[0].recv(100) == b""  # the oldest was closed to make room
    finally:
        for s in idle:
            s.close()


def test_start_serves_on_loopback_and_stop_is_idempotent() -> None:
    health.start(HealthConfig(endpoint=("127.0.0.1", 0), interval=60))
    server = health._server
    assert server is not None and server.server_address[0] == "127.0.0.1"
    r = httpx.get(f"http://127.0.0.1:{server.server_address[1]}/healthz", timeout=5)
    assert r.status_code == 200
    assert health.report().status is Status.HEALTHY
    health.stop()
    health.stop()
    assert health._server is None and health._monitor is None
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{server.server_address[1]}/healthz", timeout=5)


def test_endpoint_is_off_by_default() -> None:
    health.start(HealthConfig(interval=60))
    assert health._server is None and health._monitor is not None


def test_port_in_use_is_one_clear_line(caplog: pytest.LogCaptureFixture,
                                        capfd: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        health.start(HealthConfig(endpoint=("127.0.0.1", port), interval=60))
    assert health._server is None and health._monitor is not None
    lines = [r for r in caplog.records if "health endpoint" in r.getMessage()]
    assert len(lines) == 1 and not lines[0].exc_info
    assert lines[0].getMessage() == (f"otel_hardening: health endpoint could not listen on 127.0.0.1:{port} "
                                     "(Address already in use); it is off, everything else keeps running")
    assert "Traceback" not in caplog.text and "Traceback" not in capfd.readouterr().err


def test_restart_on_the_same_port_works_at_once() -> None:
    """The server closes first (Connection: close), so its side of each connection is in TIME_WAIT."""
    health.start(HealthConfig(endpoint=("127.0.0.1", 0), interval=60))
    assert health._server is not None
    port = health._server.server_address[1]
    for _ in range(3):
        with httpx.Client() as client:
            for _ in range(5):
                assert client.get(f"http://127.0.0.1:{port}/livez", timeout=5).status_code == 200
        health.stop()
        health.start(HealthConfig(endpoint=("127.0.0.1", port), interval=60))
        assert health._server is not None, "the restarted endpoint did not bind"
    assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200


def test_tricklers_are_cut_at_the_header_deadline_without_a_thread_each(make_env: type[Env],
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import threading
    import time

    from otel_hardening.health import _endpoint

    monkeypatch.setattr(_endpoint, "HEADER_DEADLINE", 0.5)
    env = make_env()
    port = env.server.server_address[1]
    threads_before = threading.active_count()
    socks = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(30)]
    try:
        cut = 0
        for _ in range(10):  # keep trickling: each byte arrives well inside any per-read timeout
            for s in socks:
                with contextlib.suppress(OSError):
                    s.sendall(b"t")
            time.sleep(0.1)
        assert threading.active_count() <= threads_before  # no thread per connection
        for s in socks:
            s.settimeout(2)
            with contextlib.suppress(OSError):
                cut += s.recv(10) == b""
        assert cut == 30
        assert env.server.expired == 30
    finally:
        for s in socks:
            s.close()
    assert env.get("/healthz").status_code == 200

from __future__ import annotations

from otel_hardening.health import HealthConfig, Status
from otel_hardening.health._probes import Prober
from otel_hardening.health._runtime import Monitor
from otel_hardening.health.config import Probe
from otel_hardening.testing import FlakyUpstream, Reply, closed_port


def prober(*probes: Probe, **kw: object) -> Prober:
    base: dict[str, object] = {"probe_timeout": 5.0, "probe_slow": 0.05, "probes": probes}
    base.update(kw)
    return Prober(HealthConfig(**base))  # type: ignore[arg-type]


def test_online_probe(server: FlakyUpstream) -> None:
    probe = Probe("db", server.url + "/health")
    p = prober(probe, probe_slow=2.0)  # generous: a loaded CI machine must not make loopback "slow"
    result = p.run_once(probe)
    assert result.state == "online" and result.latency_ms is not None
    comp = p.components(0)[0]
    assert (comp.name, comp.status, comp.observed_unit) == ("db:responseTime", Status.HEALTHY, "ms")
    method, path, headers, _ = server.requests[0]
    assert (method, path) == ("GET", "/health")
    assert "traceparent" not in {k.lower() for k in headers}


def test_slow_probe_is_degraded(server: FlakyUpstream) -> None:
    server.then(Reply(delay=0.3))
    probe = Probe("db", server.url + "/health")
    p = prober(probe)
    assert p.run_once(probe).state == "slow"
    assert p.components(0)[0].status is Status.DEGRADED


def test_refused_probe_is_offline() -> None:
    probe = Probe("db", f"http://127.0.0.1:{closed_port()}/health")
    p = prober(probe)
    result = p.run_once(probe)
    assert result.state == "offline" and "ConnectionRefusedError" in result.detail
    assert p.components(0)[0].status is Status.CRITICAL


def test_hanging_probe_times_out_offline(server: FlakyUpstream) -> None:
    server.then(Reply(delay=1.5))
    probe = Probe("db", server.url + "/health")
    p = prober(probe, probe_timeout=0.3)
    result = p.run_once(probe)
    assert result.state == "offline" and "within 0.3s" in result.detail


def test_error_status_is_offline(server: FlakyUpstream) -> None:
    server.then(Reply(status=503))
    probe = Probe("db", server.url + "/health")
    result = prober(probe).run_once(probe)
    assert result.state == "offline" and result.detail == "answered HTTP 503"


def test_noncritical_probe_caps_at_degraded() -> None:
    probe = Probe("cache", f"http://127.0.0.1:{closed_port()}/")
    p = prober(probe, noncritical=frozenset({"cache"}))
    p.run_once(probe)
    comp = p.components(0)[0]
    assert comp.status is Status.DEGRADED and comp.noncritical


def test_credentials_in_probe_url_are_sent_but_never_reported(server: FlakyUpstream) -> None:
    probe = Probe("db", server.url.replace("http://", "http://user:s3cret@") + "/health?token=abc123&x=1")
    p = prober(probe)
    p.run_once(probe)
    headers = {k.lower(): v for k, v in server.requests[0][2].items()}
    assert headers["authorization"].startswith("Basic ")
    assert server.requests[0][1] == "/health?token=abc123&x=1"
    text = repr(p.components(0)) + repr(probe) + probe.display_url
    assert "s3cret" not in text and "abc123" not in text and "user" not in text
    assert probe.display_url.endswith("/health?token=REDACTED&x=1")


def test_probe_threads_run_periodically_and_stop(server: FlakyUpstream) -> None:
    server.then(Reply(status=500))
    probe = Probe("db", server.url + "/health")
    cfg = HealthConfig(probes=(probe,), probe_interval=0.05, probe_timeout=5.0, probe_slow=5.0,
                       recovery_hold=0.0)
    m = Monitor(cfg, upstreams=list, resources=lambda: None)
    m.prober.start()
    try:
        deadline = 200
        while server.hits < 3 and deadline:
            import time

            time.sleep(0.05)
            deadline -= 1
        assert server.hits >= 3  # first answer 500, later ones 200
        assert m.evaluate().status is Status.HEALTHY
    finally:
        m.prober.stop()
    assert not m.prober._threads
    hits = server.hits
    import time

    time.sleep(0.2)
    assert server.hits == hits


def test_trickling_dependency_is_offline_after_the_total_timeout() -> None:
    """One byte of the status line every 0.2 s: each read is quick, the whole answer is not."""
    import socket
    import threading
    import time

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    stop = threading.Event()

    def trickle() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(4096)
            for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n":
                if stop.wait(0.2):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    probe = Probe("slowdb", f"http://127.0.0.1:{listener.getsockname()[1]}/health")
    p = prober(probe, probe_timeout=1.0, probe_slow=0.5)
    started = time.monotonic()
    result = p.run_once(probe)
    elapsed = time.monotonic() - started
    stop.set()
    thread.join(5)
    listener.close()
    assert result.state == "offline" and result.detail == "no answer within 1s"
    assert elapsed < 1.5  # the trickle would take 7 s
    assert p.components(0)[0].status is Status.CRITICAL


def test_required_probe_offline_is_not_ready_optional_one_is() -> None:
    down = f"http://127.0.0.1:{closed_port()}/health"
    for required, ready in [(frozenset(), True), (frozenset({"db"}), False)]:
        config = HealthConfig(probes=(Probe("db", down),), required=required, recovery_hold=0)
        monitor = Monitor(config, upstreams=list, resources=lambda: None, on_change=lambda p, r: None)
        monitor.prober.run_once(config.probes[0])
        report = monitor.evaluate()
        assert report.status is Status.CRITICAL and report.ready is ready
        if not ready:
            assert report.not_ready == ("db:responseTime: offline: request failed (ConnectionRefusedError)",)


def test_status_line_at_once_then_trickled_headers_is_offline() -> None:
    """``HTTP/1.1 200`` at once, then one header byte every 0.1 s for 8 s: the answer is not complete."""
    import socket
    import threading
    import time

    from tests.http.rawserver import RawServer

    def respond(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        for byte in b"X-Padding: " + b"p" * 69 + b"\r\n\r\n":
            if stop.wait(0.1):
                return
            conn.sendall(bytes([byte]))

    server = RawServer(respond)
    probe = Probe("trickle", server.url + "/health")
    p = prober(probe, probe_timeout=1.0, probe_slow=0.5)
    try:
        started = time.monotonic()
        result = p.run_once(probe)
        elapsed = time.monotonic() - started
    finally:
        server.close()
    assert result.state == "offline" and result.detail == "no answer within 1s"
    assert elapsed < 2.0  # the headers would take 8 s
    assert p.components(0)[0].status is Status.CRITICAL


def test_headers_in_several_reads_and_a_body_are_online() -> None:
    """The end of the headers split across reads still ends the probe at once; the body is not waited for."""
    import socket
    import threading

    from tests.http.rawserver import RawServer

    def respond(conn: socket.socket, stop: threading.Event) -> None:
        for part in (b"HTTP/1.1 204 No Content\r\nX-A: 1\r", b"\n", b"\r", b"\n"):
            conn.sendall(part)
            stop.wait(0.05)
        stop.wait(10)  # never closes: a probe that waited for the end of the connection would time out

    server = RawServer(respond)
    probe = Probe("split", server.url + "/health")
    try:
        result = prober(probe, probe_timeout=3.0, probe_slow=2.0).run_once(probe)
    finally:
        server.close()
    assert result.state == "online" and result.detail.startswith("answered HTTP 204"), result

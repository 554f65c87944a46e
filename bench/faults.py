"""Fault paths: rejecting while the circuit is open, and attempts per request in a total outage.

``python -m bench.faults '{"quick": false}'`` (normally through ``python -m bench``).

The outage is a loopback port nobody listens on (connections refused at once, so the client runs as
fast as it can). Attempts are counted by a transport under the hardening layer, so every attempt
that reached the network is seen. For the budget figures the circuit is held closed
(``fail_max`` huge): otherwise it opens after 5 failures and no attempt reaches the network at all.
"""

from __future__ import annotations

import contextlib
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
from opentelemetry import trace

from bench import _proc, _upstream, _variants


class CountingTransport(httpx.HTTPTransport):
    def __init__(self) -> None:
        super().__init__()
        self.attempts = 0
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.attempts += 1
        return super().handle_request(request)


def reject_open(n: int) -> dict[str, Any]:
    """µs per request while the circuit is open: ours against pybreaker's ``call()``."""
    import pybreaker

    import otel_hardening
    from otel_hardening import CircuitOpenError, CircuitPolicy, RetryPolicy

    url = f"http://127.0.0.1:{_upstream.dead_port()}/"
    client = otel_hardening.harden(httpx.Client(), retry=RetryPolicy(max_attempts=1),
                                   circuit=CircuitPolicy(fail_max=5, reset_timeout=3600))
    for _ in range(10):
        try:
            client.get(url)
        except CircuitOpenError:
            break
        except httpx.ConnectError:
            pass
    else:
        raise RuntimeError("the circuit did not open after 10 refused connections")

    breaker = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=3600)
    plain = httpx.Client()
    for _ in range(10):
        try:
            breaker.call(plain.get, url)
        except pybreaker.CircuitBreakerError:
            break
        except httpx.ConnectError:
            pass

    def timed(fn: Any, errors: type[BaseException]) -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(n):
            with contextlib.suppress(errors):
                fn()
        return (time.perf_counter() - wall) / n * 1e6, (time.process_time() - cpu) / n * 1e6

    # The layer alone: its per-request step with the request already built (what pybreaker's call()
    # is compared with), inside a recording caller span as in a traced app (the rejection's event).
    request = client.build_request("GET", url)
    layer_step = client._send_single_request
    caller = trace.get_tracer("bench").start_span("caller")
    ours, peer, layer = [], [], []
    with trace.use_span(caller, end_on_exit=True):
        for _ in range(5):
            ours.append(timed(lambda: client.get(url), CircuitOpenError))
            peer.append(timed(lambda: breaker.call(plain.get, url), pybreaker.CircuitBreakerError))
            layer.append(timed(lambda: layer_step(request), CircuitOpenError))
    return {
        "layer_cpu_us": statistics.median(c for _, c in layer),
        "hardened_wall_us": statistics.median(w for w, _ in ours),
        "hardened_cpu_us": statistics.median(c for _, c in ours),
        "pybreaker_wall_us": statistics.median(w for w, _ in peer),
        "pybreaker_cpu_us": statistics.median(c for _, c in peer),
    }


def outage_high_rate(seconds: float) -> dict[str, Any]:
    """16 threads sending back to back into a dead port, default retry policy and budget."""
    import otel_hardening
    from otel_hardening import CircuitPolicy

    url = f"http://127.0.0.1:{_upstream.dead_port()}/"
    transport = CountingTransport()
    client = otel_hardening.harden(httpx.Client(transport=transport), circuit=CircuitPolicy(fail_max=10**9))
    return _drive(lambda: client.get(url), transport, seconds)


def peer_outage_high_rate(seconds: float) -> dict[str, Any]:
    """The same load through stamina + pybreaker (held closed): no budget, so every retry is sent."""
    import pybreaker
    import stamina

    url = f"http://127.0.0.1:{_upstream.dead_port()}/"
    transport = CountingTransport()
    client = httpx.Client(transport=transport)
    breaker = pybreaker.CircuitBreaker(fail_max=10**9)

    @stamina.retry(on=httpx.TransportError, attempts=3, timeout=30.0)
    def get() -> httpx.Response:
        response: httpx.Response = breaker.call(client.get, url)
        return response

    return _drive(get, transport, seconds)


def _drive(get: Callable[[], object], transport: CountingTransport, seconds: float) -> dict[str, Any]:
    """16 threads issuing requests back to back for ``seconds``; attempts per request overall and in
    the second half (after the budget's initial bank of ``min_per_second * ttl`` tokens is spent)."""
    start = time.monotonic()
    stop, half = start + seconds, start + seconds / 2
    lock = threading.Lock()
    done = [0, 0]  # requests finished: all, started in the second half
    at_half: list[int] = []

    def worker() -> None:
        while (began := time.monotonic()) < stop:
            with contextlib.suppress(httpx.HTTPError):
                get()
            with lock:
                done[0] += 1
                if began >= half:
                    done[1] += 1

    timer = threading.Timer(seconds / 2, lambda: at_half.append(transport.attempts))
    timer.start()
    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    timer.join()
    return {"requests": done[0], "rate_per_s": done[0] / (time.monotonic() - start),
            "attempts_per_request": transport.attempts / max(1, done[0]),
            "attempts_per_request_second_half": (transport.attempts - at_half[0]) / max(1, done[1])}


def outage_low_rate(rate: float, seconds: float) -> dict[str, Any]:
    """Sync requests at ``rate`` per second against a dead port: the budget's floor decides."""
    import otel_hardening
    from otel_hardening import CircuitPolicy

    url = f"http://127.0.0.1:{_upstream.dead_port()}/"
    transport = CountingTransport()
    client = otel_hardening.harden(httpx.Client(transport=transport), circuit=CircuitPolicy(fail_max=10**9))
    n = max(1, int(rate * seconds))
    start = time.monotonic()
    for i in range(n):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        with contextlib.suppress(httpx.HTTPError):
            client.get(url)
    return {"requests": n, "rate_per_s": rate, "attempts_per_request": transport.attempts / n}


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    quick = spec.get("quick", False)
    _variants.setup(2, 60.0)  # traced, as a real app: spans and events of the fault paths cost too
    return {
        "reject_open": reject_open(1000 if quick else 5000),
        "outage_high_rate": outage_high_rate(1.0 if quick else 10.0),
        "peer_outage_high_rate": peer_outage_high_rate(1.0 if quick else 10.0),
        "outage_low_rate": outage_low_rate(2.0, 1.0 if quick else 10.0),
    }


if __name__ == "__main__":
    _proc.child_main(measure)

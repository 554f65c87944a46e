"""Active dependency probes: a GET of each configured health URL, off the request path.

One daemon thread per probe (at most ``config.MAX_PROBES``), so a dependency that hangs until the
timeout does not delay the others. Probes speak HTTP/1.1 over a plain socket, not httpx: ``install()``
hardens every httpx client created after it, and a probe must not get retries, a circuit or upstream
counters of its own; and ``HEALTH_PROBE_TIMEOUT`` is one deadline for the whole exchange, which
per-read socket timeouts cannot give. Instrumentation is suppressed as well, and no proxy is used.
"""

from __future__ import annotations

import base64
import http.client
import logging
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from opentelemetry import context as otel_context

from otel_hardening._logging import log_once
from otel_hardening.health._model import ComponentStatus, Status, dependency
from otel_hardening.health.config import HealthConfig, Probe

# Used across the contrib instrumentations; the API has no public way to say "do not trace this".
_SUPPRESS_KEY = getattr(otel_context, "_SUPPRESS_INSTRUMENTATION_KEY", "suppress_instrumentation")


@dataclass(frozen=True)
class ProbeResult:
    state: str
    """``online`` | ``slow`` | ``offline``."""
    latency_ms: float | None
    detail: str


MAX_HEAD = 65536
"""Status line and headers together; a longer head is not an answer (httpx's h11 caps it alike)."""


def _status_code(line: bytes) -> int:
    version, _, rest = line.partition(b" ")
    code = rest[:3]
    if not version.startswith(b"HTTP/") or len(code) != 3 or not code.isdigit():
        raise http.client.BadStatusLine("not an HTTP status line")
    return int(code)


def _get(url: str, timeout: float) -> int:
    """GET ``url`` and return the status code, all within ``timeout`` seconds in total.

    A socket timeout bounds each read, so a dependency trickling one byte a second would never time
    out; here every step gets only what is left of one deadline. The status line and the headers are
    read (a dependency that answers its status line and then stalls has not answered); the body tells
    the probe nothing more. (Name resolution is the resolver's, not bounded here.)
    """
    deadline = time.monotonic() + timeout

    def left() -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        return remaining

    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    authority = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
    lines = [f"GET {target} HTTP/1.1", f"Host: {authority}", "Accept: application/health+json, */*",
             "User-Agent: otel-hardening-probe", "Connection: close"]
    if parts.username is not None:
        raw = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        lines.append("Authorization: Basic " + base64.b64encode(raw).decode())
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    sock = socket.create_connection((host, port), timeout=left())
    try:
        if parts.scheme == "https":
            sock.settimeout(left())
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        sock.settimeout(left())
        sock.sendall(request)
        buf = b""
        while b"\n\r\n" not in buf and b"\n\n" not in buf:
            sock.settimeout(left())
            chunk = sock.recv(4096)
            if not chunk:
                raise http.client.RemoteDisconnected("closed before the end of the headers")
            buf += chunk
            if len(buf) > MAX_HEAD:
                raise http.client.LineTooLong("status line and headers")
        return _status_code(buf.split(b"\n", 1)[0].rstrip(b"\r"))
    finally:
        sock.close()


def classify(probe: Probe, config: HealthConfig) -> ProbeResult:
    """One GET of ``probe.url``: online, slow (answered after ``probe_slow``) or offline."""
    token = otel_context.attach(otel_context.set_value(_SUPPRESS_KEY, True))
    start = time.perf_counter()
    try:
        code = _get(probe.url, config.probe_timeout)
        latency = time.perf_counter() - start
    except TimeoutError:
        return ProbeResult("offline", None, f"no answer within {config.probe_timeout:g}s")
    except (OSError, http.client.HTTPException) as exc:  # the text may hold the URL: show the type only
        return ProbeResult("offline", None, f"request failed ({type(exc).__name__})")
    finally:
        otel_context.detach(token)
    latency_ms = round(latency * 1000, 1)
    if latency > config.probe_timeout:  # the socket timeout is per operation; bound the whole exchange
        return ProbeResult("offline", latency_ms, f"no complete answer within {config.probe_timeout:g}s")
    if not 200 <= code < 400:
        return ProbeResult("offline", latency_ms, f"answered HTTP {code}")
    if latency > config.probe_slow:
        return ProbeResult("slow", latency_ms, f"answered HTTP {code} in {latency_ms:g} ms "
                                               f"(slow above {config.probe_slow * 1000:g} ms)")
    return ProbeResult("online", latency_ms, f"answered HTTP {code} in {latency_ms:g} ms")


_STATE_STATUS = {"online": Status.HEALTHY, "slow": Status.DEGRADED, "offline": Status.CRITICAL}


def component(probe: Probe, result: ProbeResult | None, config: HealthConfig) -> ComponentStatus:
    if result is None:
        comp = ComponentStatus(probe.name, "responseTime", Status.HEALTHY, "not probed yet", None, "ms")
    else:
        comp = ComponentStatus(probe.name, "responseTime", _STATE_STATUS[result.state],
                               f"{result.state}: {result.detail}", result.latency_ms, "ms")
    return dependency(comp, config.noncritical, config.required, urlsplit(probe.url).hostname or "")


class Prober:
    """Runs every probe periodically in its own daemon thread; ``components()`` reads the latest results."""

    def __init__(self, config: HealthConfig) -> None:
        self._config = config
        self._results: dict[str, ProbeResult] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def run_once(self, probe: Probe) -> ProbeResult:
        """Probe ``probe`` now, store and return the result (what each probe thread does periodically)."""
        try:
            result = classify(probe, self._config)
        except Exception:
            log_once(f"health:probe:{probe.name}", logging.WARNING,
                     "otel_hardening: health probe %r (%s) failed unexpectedly; reporting it offline",
                     probe.name, probe.display_url, exc_info=True)
            result = ProbeResult("offline", None, "probe error")
        with self._lock:
            self._results[probe.name] = result
        return result

    def _loop(self, probe: Probe) -> None:
        while not self._stop.is_set():
            self.run_once(probe)
            self._stop.wait(self._config.probe_interval)

    def start(self) -> None:
        for probe in self._config.probes:
            thread = threading.Thread(target=self._loop, args=(probe,), daemon=True,
                                      name=f"otel-hardening-probe-{probe.name}")
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float | None = None) -> None:
        self._stop.set()
        wait = self._config.probe_timeout + 1 if timeout is None else timeout
        for thread in self._threads:
            thread.join(wait)
        self._threads.clear()

    def components(self, now: float) -> list[ComponentStatus]:
        with self._lock:
            results = dict(self._results)
        return [component(p, results.get(p.name), self._config) for p in self._config.probes]

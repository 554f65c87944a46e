"""Fixtures for the end-to-end tests: the real collector binary, Prometheus and Alertmanager on free
loopback ports (otel_hardening.stack), the demo app in a subprocess, and a flaky upstream; Jaeger and
VictoriaLogs for the trace/log search, dashboard and alert tests, read through their own HTTP APIs
(``jaeger_traces``, ``logsql``).

The collector comes from ``$OTELCOL_BIN`` or the cache collector/build.sh fills, Jaeger and
VictoriaLogs from ``$OTEL_HARDENING_<NAME>_BIN`` or the cache tools/build-component.sh fills. When one
of them or Prometheus/Alertmanager is missing, the tests that need it skip with the reason
(``skip_without``), and the run ends with one loud line saying so.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from otel_hardening.stack import (
    LocalStack,
    ManagedProcess,
    StackError,
    StackSettings,
    cached_collector,
    find_component,
    free_port,
    repo_root,
)
from otel_hardening.stack._render import OPTIONAL
from otel_hardening.testing import FlakyUpstream, Reply

ROOT = repo_root(Path(__file__).parent)
SAMPLING_PERCENTAGE = 50.0
_SKIPPED: dict[str, str] = {}


def _collector_bin() -> tuple[Path | None, str]:
    env = os.environ.get("OTELCOL_BIN")
    path = Path(env) if env else cached_collector(ROOT)
    if os.access(path, os.X_OK):
        return path, ""
    source = f"OTELCOL_BIN={env}" if env else f"no binary at {path}"
    return None, f"the collector is not built ({source}): run collector/build.sh"


@pytest.fixture(scope="session")
def collector_bin() -> Path:
    path, why = _collector_bin()
    if path is None:
        _SKIPPED["collector"] = why
        pytest.skip(why)
    return path


@pytest.fixture(scope="session")
def stack_tools(collector_bin: Path) -> Path:
    missing = [t for t in ("prometheus",) if shutil.which(t) is None]
    if shutil.which("prometheus-alertmanager") is None and shutil.which("alertmanager") is None:
        missing.append("alertmanager")
    if missing:
        why = f"{' and '.join(missing)} not installed (apt-get install prometheus prometheus-alertmanager)"
        _SKIPPED["tools"] = why
        pytest.skip(why)
    return collector_bin


def missing_components(*names: str) -> dict[str, str]:
    """Which of these components (components.tsv; default: the stack's optional ones, Jaeger and
    VictoriaLogs) are not built, with the reason."""
    missing = {}
    for name in names or OPTIONAL:
        try:
            find_component(name)
        except StackError as exc:
            missing[name] = str(exc)
    return missing


@pytest.fixture(scope="session")
def backends_missing(stack_tools: Path) -> dict[str, str]:
    """``missing_components()`` once the collector and Prometheus are there: a stack started with
    ``without=frozenset(backends_missing)`` runs every backend that is built."""
    return missing_components()


def skip_without(*names: str) -> None:
    """Skip (loudly, at the end of the run too) when a component the test needs is not built:
    ``skip_without("jaeger")``, ``skip_without("jaeger", "victorialogs")``, ``skip_without("docker-compose")``."""
    missing = missing_components(*names)
    reasons = list(missing.values())
    if reasons:
        for name in names:
            if name in missing:
                _SKIPPED[name] = missing[name]
        pytest.skip("; ".join(reasons))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.when == "call" and report.failed:
        item.stash[_FAILED] = True


_FAILED = pytest.StashKey[bool]()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _SKIPPED:
        reasons = "; ".join(sorted(set(_SKIPPED.values())))
        terminalreporter.write_line(
            f"!!!!! E2E TESTS SKIPPED: {reasons} !!!!!", red=True, bold=True
        )


def call_failed(request: pytest.FixtureRequest) -> bool:
    """Whether the test of this (function-scoped) fixture request failed in its call phase."""
    return bool(request.node.stash.get(_FAILED, False))


def show_logs_on_failure(request: pytest.FixtureRequest, logs: str) -> None:
    if call_failed(request):
        sys.stderr.write(f"\n----- logs of the stack -----\n{logs}\n")


def start_stack(run_dir: Path, settings: StackSettings, collector_bin: Path) -> LocalStack:
    """The local stack up on this checkout's configs, or the test fails with the reason."""
    local = LocalStack(run_dir, root=ROOT, settings=settings, collector_bin=collector_bin)
    try:
        local.up()
    except StackError as exc:
        pytest.fail(f"the local stack did not come up: {exc}")
    return local


@pytest.fixture
def stack(stack_tools: Path, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[LocalStack]:
    # The pipeline tests read the collector's trace file and Prometheus: no Jaeger or VictoriaLogs.
    settings = StackSettings(
        sampling_percentage=SAMPLING_PERCENTAGE, decision_wait="2s", spanmetrics_flush_interval="2s",
        scrape_interval="1s", ready_timeout=60.0, without=frozenset(OPTIONAL),
    )
    local = start_stack(tmp_path / "stack", settings, stack_tools)
    try:
        yield local
    finally:
        show_logs_on_failure(request, local.logs(60))
        local.down()


@contextlib.contextmanager
def serve_upstream() -> Iterator[tuple[Upstream, str]]:
    """The flaky upstream on a free loopback port: (its state, its URL)."""
    with FlakyUpstream() as server:
        yield Upstream(server), server.url


class Upstream:
    """The testing kit's upstream, switched between the fault phases the e2e scenarios use."""

    def __init__(self, server: FlakyUpstream) -> None:
        self.server = server

    def set_phase(self, phase: str) -> None:
        if phase == "healthy":
            self.server.always(Reply(200))
            # tests/e2e/workload.py's writes there become dead letters when replayed after an outage
            self.server.on("/orders-rejected", *[Reply(422)] * 10_000)
            # tests/e2e/workload.py's /saturate callers: slow answers that hold the pool's connections
            self.server.on("/slow", *[Reply(200, delay=1.0)] * 10_000)
        elif phase == "alternate":  # 503, 200, 503, ...: every logical request is retried once
            self.server.cycle(Reply(503), Reply(200))
        elif phase == "down":
            self.server.always(Reply(503))
        else:
            raise ValueError(f"unknown phase {phase!r}: healthy, alternate or down")


@pytest.fixture
def upstream() -> Iterator[tuple[Upstream, str]]:
    with serve_upstream() as served:
        yield served


@dataclass
class DemoApp:
    proc: ManagedProcess
    url: str

    def work(self, timeout: float = 10.0) -> tuple[int, float]:
        """(status, seconds) of one GET /work."""
        start = time.perf_counter()
        try:
            with urllib.request.urlopen(f"{self.url}/work", timeout=timeout) as response:
                status = int(response.status)
        except urllib.error.HTTPError as exc:
            status = exc.code
        return status, time.perf_counter() - start


@pytest.fixture
def demo_app(stack: LocalStack, upstream: tuple[Upstream, str], tmp_path: Path,
             request: pytest.FixtureRequest) -> Iterator[DemoApp]:
    port = free_port()
    env = {
        "OTEL_SERVICE_NAME": "e2e-demo",
        "OTEL_EXPORTER_OTLP_ENDPOINT": stack.otlp_grpc_endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_METRIC_EXPORT_INTERVAL": "1000",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "2",
        "OTEL_PYTHON_HARDENING_RETRY_MAX_ATTEMPTS": "3",
        "OTEL_PYTHON_HARDENING_RETRY_BACKOFF_INITIAL": "0.01",
        "OTEL_PYTHON_HARDENING_RETRY_BACKOFF_MAX": "0.05",
        "OTEL_PYTHON_HARDENING_CIRCUIT_FAIL_MAX": "1000",
        "OTEL_PYTHON_HARDENING_RETRY_BUDGET_RATIO": "1.0",
        "OTEL_PYTHON_HARDENING_RETRY_BUDGET_MIN_PER_SECOND": "1000",
        "PYTHONPATH": str(ROOT),
    }
    proc = ManagedProcess.start(
        "demo-app",
        [sys.executable, "-m", "otel_hardening.demo.service", "--port", str(port), "--upstream", upstream[1]],
        tmp_path / "demo-app.log", f"http://127.0.0.1:{port}/healthz", env=env, cwd=ROOT,
    )
    try:
        proc.wait_ready(30)
        yield DemoApp(proc, f"http://127.0.0.1:{port}")
    finally:
        proc.stop()
        show_logs_on_failure(request, f"===== demo-app =====\n{proc.log.read_text(errors='replace')[-4000:]}")


# -- reading what arrived ------------------------------------------------------------------------

def read_spans(path: Path) -> list[dict[str, Any]]:
    """Every span in a file exporter's JSON lines, with its resource attributes as ``_resource``."""
    spans: list[dict[str, Any]] = []
    if not path.exists():
        return spans
    for batch in _json_objects(path.read_text()):
        for resource_spans in batch.get("resourceSpans", []):
            resource = attributes(resource_spans.get("resource", {}))
            for scope_spans in resource_spans.get("scopeSpans", []):
                for span in scope_spans.get("spans", []):
                    span["_resource"] = resource
                    span["_attributes"] = attributes(span)
                    spans.append(span)
    return spans


def _json_objects(text: str) -> Iterator[dict[str, Any]]:
    """The JSON objects in a file exporter's output. A collector killed mid-write leaves its last
    object without a newline (the restarted one appends right after it) or cut short: read object
    by object, and skip to the next object start past a cut-short one."""
    decoder = json.JSONDecoder()
    start = "{\"resourceSpans\""
    pos = text.find(start)
    while pos != -1:
        try:
            obj, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            pos = text.find(start, pos + 1)
            continue
        if isinstance(obj, dict):
            yield obj
        pos = text.find(start, end)


def attributes(obj: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for attr in obj.get("attributes", []):
        value = attr.get("value", {})
        for kind in ("stringValue", "boolValue", "doubleValue"):
            if kind in value:
                out[attr["key"]] = value[kind]
        if "intValue" in value:
            out[attr["key"]] = int(value["intValue"])
    return out


def traces_by_id(spans: list[dict[str, Any]], service: str | None = None) -> dict[str, list[dict[str, Any]]]:
    traces: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        if service is None or span["_resource"].get("service.name") == service:
            traces.setdefault(span["traceId"], []).append(span)
    return traces


def prom_query(base: str, query: str) -> list[dict[str, Any]]:
    url = f"{base}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
    with urllib.request.urlopen(url, timeout=5) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def wait_for(predicate: Any, timeout: float, interval: float = 0.5, what: str = "condition") -> Any:
    """Poll until ``predicate()`` is truthy; return its value, or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def jaeger_traces(stack: LocalStack, service: str, tags: dict[str, str] | None = None,
                  limit: int = 100) -> list[dict[str, Any]]:
    """Jaeger's trace search (``GET /api/traces``): the traces of ``service`` with a span carrying every
    one of ``tags`` (exact match, values compared as strings), newest first as Jaeger returns them.
    Each trace is Jaeger's JSON: ``traceID``, ``spans`` (with ``tags`` as [{key, type, value}],
    ``references``, ``processID``) and ``processes``. A service Jaeger has not seen yet: []."""
    params = {"service": service, "limit": str(limit)}
    if tags:
        params["tags"] = json.dumps(tags)
    try:
        body = _get_json(f"{stack.jaeger_url}/api/traces?{urllib.parse.urlencode(params)}")
    except urllib.error.HTTPError as exc:
        if exc.code == 404:  # no such service (yet)
            return []
        raise
    traces: list[dict[str, Any]] = body.get("data") or []
    return traces


def jaeger_tags(span: dict[str, Any]) -> dict[str, Any]:
    """A Jaeger span's tags as a dict (key -> value)."""
    return {tag["key"]: tag["value"] for tag in span.get("tags", [])}


def logsql(stack: LocalStack, query: str, limit: int = 1000) -> list[dict[str, Any]]:
    """VictoriaLogs' LogsQL query API (``/select/logsql/query``): the matching records, each a flat dict
    of its fields (``_msg``, ``_time``, ``service.name``, ``trace_id``, the record's attributes)."""
    params = urllib.parse.urlencode({"query": query, "limit": str(limit)})
    with urllib.request.urlopen(f"{stack.victorialogs_url}/select/logsql/query?{params}", timeout=10) as response:
        lines = response.read().decode().splitlines()
    return [json.loads(line) for line in lines if line.strip()]

"""The dashboards' Jaeger searches, run as Grafana runs them (tests/e2e/dashboard_queries.py) against a
real Jaeger (jaeger/jaeger.yaml) holding spans with the attributes the package emits: each finds its
span by exact tag (a bool attribute matches the string "true"), and a tag value that is not there
finds nothing."""

from __future__ import annotations

import dataclasses
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from otel_hardening.stack import free_port
from otel_hardening.stack._process import ManagedProcess
from tests.dashboards.conftest import ROOT, built_dashboards, component
from tests.dashboards.grafana_vars import Variable
from tests.e2e.dashboard_queries import Answer, Backends, Runner, Target, targets

SERVICE = "shop.v2"


@pytest.fixture(scope="module")
def jaeger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(query API URL, OTLP/gRPC endpoint) of a Jaeger on free loopback ports."""
    binary = component("jaeger")
    work = tmp_path_factory.mktemp("jaeger")
    http, otlp = free_port(), free_port()
    env = {"JAEGER_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{otlp}", "JAEGER_QUERY_HTTP_ENDPOINT": f"127.0.0.1:{http}",
           "JAEGER_QUERY_GRPC_ENDPOINT": f"127.0.0.1:{free_port()}"}
    base = f"http://127.0.0.1:{http}"
    proc = ManagedProcess.start("jaeger", [str(binary), "--config", str(ROOT / "jaeger" / "jaeger.yaml")],
                                work / "jaeger.log", f"{base}/api/services", env=env, cwd=work)
    try:
        proc.wait_ready(60)
        yield base, f"127.0.0.1:{otlp}"
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def spans(jaeger: tuple[str, str]) -> str:
    """A retried request and one that failed after retries, as hardening.request spans of SERVICE."""
    base, otlp = jaeger
    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=otlp, insecure=True)))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("hardening.request", attributes={"hardening.retried": True,
                                                                      "hardening.outcome": "success_after_retry"}):
        pass
    with tracer.start_as_current_span("hardening.request", attributes={"hardening.retried": True,
                                                                      "hardening.outcome": "failure_after_retry"}):
        pass
    provider.shutdown()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # both traces searchable
        try:
            with urllib.request.urlopen(f"{base}/api/traces?service={SERVICE}", timeout=5) as response:
                if len(json.load(response).get("data") or []) == 2:
                    return base
        except urllib.error.HTTPError:
            pass  # no such service yet
        time.sleep(0.5)
    pytest.fail(f"the two traces of {SERVICE} never reached Jaeger")


def jaeger_targets() -> list[Target]:
    return [t for board in built_dashboards().values() for t in targets(board) if t.ds_type == "jaeger"]


def search(base: str, target: Target, service: str = SERVICE) -> Answer:
    """The target as the HTTP dashboard runs it with `service` picked in the Trace service variable."""
    now = time.time()
    runner = Runner(Backends("", jaeger=base), now - 3600, now + 60)
    variables = {"trace_service": Variable("trace_service", service),
                 "jaeger_datasource": Variable("jaeger_datasource", "jaeger")}
    return runner.run_target(target, variables)


def test_the_two_trace_tables_are_jaeger_searches() -> None:
    tags = sorted(str(t.query["tags"]) for t in jaeger_targets())
    assert tags == ["hardening.outcome=failure_after_retry", "hardening.retried=true"], tags


@pytest.mark.parametrize("target", jaeger_targets(), ids=lambda t: t.panel["title"])
def test_each_trace_table_finds_its_spans_by_exact_tag(spans: str, target: Target) -> None:
    answer = search(spans, target)
    assert answer.error is None, answer.error
    key, value = str(target.query["tags"]).split("=")
    found = [[s for s in trace["spans"] if any(t["key"] == key and str(t["value"]).lower() == value
                                               for t in s["tags"])] for trace in answer.data]
    assert found and all(found), f"{answer.request}: {answer.data}"
    expected = 2 if key == "hardening.retried" else 1
    assert len(answer.data) == expected, answer.request


@pytest.mark.parametrize("target", jaeger_targets(), ids=lambda t: t.panel["title"])
def test_a_tag_value_or_service_that_is_not_there_finds_nothing(spans: str, target: Target) -> None:
    missing_value = dataclasses.replace(target, query={**target.query, "tags": str(target.query["tags"]) + "x"})
    assert search(spans, missing_value).data == []
    assert not search(spans, target, service="shop").data  # service names match exactly too

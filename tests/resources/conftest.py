from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from otel_hardening import resources


@pytest.fixture(autouse=True)
def _stopped() -> Iterator[None]:
    yield
    resources.stop()


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def provider(reader: InMemoryMetricReader) -> MeterProvider:
    return MeterProvider(metric_readers=[reader])


Points = dict[str, list[tuple[dict[str, object], float]]]


@pytest.fixture
def collect(reader: InMemoryMetricReader) -> Callable[[], Points]:
    return lambda: points(reader)


def points(reader: InMemoryMetricReader) -> Points:
    """metric name -> [(attributes, value)] from one collection."""
    out: dict[str, list[tuple[dict[str, object], float]]] = {}
    data = reader.get_metrics_data()
    if data is None:
        return out
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                out[metric.name] = [(dict(p.attributes or {}), p.value)  # type: ignore[union-attr]
                                    for p in metric.data.data_points]
    return out


def units(reader: InMemoryMetricReader) -> dict[str, str]:
    data = reader.get_metrics_data()
    assert data is not None
    return {m.name: m.unit or ""
            for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}

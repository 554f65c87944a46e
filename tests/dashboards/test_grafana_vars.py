"""The dashboard query runner's Grafana interpolation against Grafana's documented semantics: the
examples of the docs pages "Variable syntax" (advanced variable format options) and "Global
variables" ($__rate_interval), and the data sources' own escaping (Prometheus, Jaeger tags,
VictoriaLogs)."""

from __future__ import annotations

import pytest

from tests.dashboards.grafana_vars import (
    ALL,
    Variable,
    Window,
    go_duration,
    interpolate,
    logfmt_tags_to_json,
    parse_duration_ms,
    prometheus_expr,
    prometheus_format,
    victorialogs_format,
)

SERVERS = {"servers": Variable("servers", ["test1.", "test2"], multi=True)}


@pytest.mark.parametrize(("text", "expected"), [
    # "Advanced variable format options", servers = ['test1.', 'test2'] (the docs' examples)
    ("${servers:csv}", "test1.,test2"),
    ("${servers:distributed}", "test1.,servers=test2"),
    ("${servers:doublequote}", '"test1.","test2"'),
    ("${servers:glob}", "{test1.,test2}"),
    ("${servers:lucene}", '("test1." OR "test2")'),
    ("${servers:pipe}", "test1.|test2"),
    ("${servers:raw}", "test1.,test2"),
    ("${servers:regex}", "(test1\\.|test2)"),
    ("${servers:singlequote}", "'test1.','test2'"),
    ("${servers:text}", "test1. + test2"),
    ("${servers:queryparam}", "var-servers=test1.&var-servers=test2"),
    # JSON.stringify, no spaces (the docs page shows one after the comma)
    ("${servers:json}", '["test1.","test2"]'),
    # "If any invalid formatting option is specified, then glob is the default/fallback option."
    ("${servers:nonsense}", "{test1.,test2}"),
    # No format and no data source format: glob; the four syntaxes alike
    ("$servers", "{test1.,test2}"),
    ("${servers}", "{test1.,test2}"),
    ("[[servers]]", "{test1.,test2}"),
    ("[[servers:csv]]", "test1.,test2"),
    ("apps.$servers.count", "apps.{test1.,test2}.count"),
    # Not a variable of the dashboard: left for the data source (Grafana's built-ins)
    ("rate(x[$__rate_interval]) $nosuch", "rate(x[$__rate_interval]) $nosuch"),
])
def test_documented_formats(text: str, expected: str) -> None:
    assert interpolate(text, SERVERS) == expected


def test_sqlstring_and_percentencode() -> None:
    quoted = {"servers": Variable("servers", ["test'1", "test2"], multi=True)}
    assert interpolate("${servers:sqlstring}", quoted) == "'test''1','test2'"
    one = {"servers": Variable("servers", "foo()bar BAZ")}
    assert interpolate("${servers:percentencode}", one) == "foo%28%29bar%20BAZ"


def test_all_with_a_custom_all_value_is_not_formatted() -> None:
    """template_srv: a custom all value skips formatting, except for text and percentencode."""
    job = {"job": Variable("job", [ALL], multi=True, include_all=True, all_value=".+", options=("a", "b"))}
    assert interpolate('{job=~"$job"}', job, prometheus_format) == '{job=~".+"}'
    assert interpolate("`^(${job:regex})$`", job, victorialogs_format) == "`^(.+)$`"
    assert interpolate("${job:text}", job) == "All"
    assert interpolate("${job:percentencode}", job) == "%7Ba%2Cb%7D"


def test_all_without_a_custom_all_value_is_every_option() -> None:
    job = {"job": Variable("job", ALL, multi=True, include_all=True, options=("a.b", "c"))}
    assert interpolate("${job:regex}", job) == "(a\\.b|c)"
    assert interpolate("$job", job, prometheus_format) == "(a\\\\.b|c)"


def test_prometheus_escaping() -> None:
    """interpolateQueryExpr: multi/All values regex-escaped for a PromQL string (so doubled), joined
    as (a|b); a single-value variable only string-escaped."""
    multi = {"job": Variable("job", ["ns/shop.v2", "cart"], multi=True, include_all=True)}
    assert interpolate('{job=~"$job"}', multi, prometheus_format) == '{job=~"(ns/shop\\\\.v2|cart)"}'
    one_of_multi = {"job": Variable("job", ["shop.v2"], multi=True)}
    assert interpolate('{job=~"$job"}', one_of_multi, prometheus_format) == '{job=~"shop\\\\.v2"}'
    single = {"job": Variable("job", "it's")}
    assert interpolate('{job="$job"}', single, prometheus_format) == '{job="it\\\\\'s"}'
    # An explicit format wins over the data source's.
    assert interpolate('{job=~"${job:pipe}"}', multi, prometheus_format) == '{job=~"ns/shop.v2|cart"}'


def test_victorialogs_multi_values() -> None:
    multi = {"svc": Variable("svc", ["a", "b"], multi=True)}
    assert interpolate("service.name:in($svc)", multi, victorialogs_format) == "service.name:in((a OR b))"
    assert interpolate("service.name:$svc", {"svc": Variable("svc", "a")}, victorialogs_format) == "service.name:a"


@pytest.mark.parametrize(("hours", "points", "time_interval", "interval", "rate"), [
    # 1 h over 960 px: 3.75 s rounds to 5 s; no scrape interval set: 15 s, so 4 x 15 s wins
    (1, 960, None, "5s", "1m0s"),
    # the same with the data source's scrape interval at 5 s: max(5 s + 5 s, 4 x 5 s)
    (1, 960, "5s", "5s", "20s"),
    # 24 h over 960 px: 90 s rounds to 1 m; $__interval + 15 s beats 4 x 15 s
    (24, 960, None, "1m", "1m15s"),
    # the scrape interval bounds $__interval from below
    (1, 2000, "30s", "30s", "2m0s"),
])
def test_interval_and_rate_interval(hours: int, points: int, time_interval: str | None, interval: str,
                                    rate: str) -> None:
    """"Global variables": $__rate_interval = max($__interval + scrape interval, 4 x scrape
    interval), the scrape interval being the data source's (15 s when unset)."""
    window = Window(0, hours * 3600, points, parse_duration_ms(time_interval) if time_interval else None)
    expr = prometheus_expr("rate(x[$__rate_interval]) [$__interval] ${__range} $__range_s $__interval_ms",
                           {}, window)
    range_s = hours * 3600
    assert expr == f"rate(x[{rate}]) [{interval}] {range_s}s {range_s} {parse_duration_ms(interval)}"


def test_go_durations_and_grafana_intervals() -> None:
    assert [go_duration(ms) for ms in (0, 500, 20000, 60000, 75000, 3600000, 1500)] == \
        ["0s", "500ms", "20s", "1m0s", "1m15s", "1h0m0s", "1.5s"]
    assert [parse_duration_ms(t) for t in ("15s", "<10s", "1m30s", "500ms", "30")] == [15000, 10000, 90000, 500, 30000]
    with pytest.raises(ValueError, match="not a Grafana interval"):
        parse_duration_ms("soon")


@pytest.mark.parametrize(("tags", "expected"), [
    ("hardening.retried=true", '{"hardening.retried":"true"}'),
    ('hardening.outcome=failure_after_retry http.request.resend_count=1',
     '{"hardening.outcome":"failure_after_retry","http.request.resend_count":"1"}'),
    ('error msg="a \\"b\\" c"', '{"error":"true","msg":"a \\"b\\" c"}'),
    ("", "{}"),
])
def test_jaeger_tags_logfmt_to_json(tags: str, expected: str) -> None:
    assert logfmt_tags_to_json(tags) == expected

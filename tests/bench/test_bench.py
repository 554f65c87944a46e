"""The benchmark suite's own pieces: the upstreams answer correctly, a worker measures each variant, the
docs block and the README's summary line are replaced exactly, and a goal that does not hold is reported as not holding.

The suite itself runs in CI as ``python -m bench --quick`` (a crash fails CI); these tests keep the
pieces honest without its minutes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench import _proc, _upstream, report


def _running(kind: str, delay_ms: int = 0) -> Any:
    if kind == "go" and shutil.which("go") is None and _upstream.go_binary() is None:
        pytest.skip("Go is not installed: the Go benchmark upstream cannot be built")
    return _upstream.running(delay_ms, prefer_go=kind == "go")


@pytest.fixture(scope="module")
def upstream() -> Any:
    with _running("go") as up:
        yield up


@pytest.mark.parametrize("kind", ["go", "python"])
def test_upstream_keeps_alive_and_discards_request_bodies(kind: str) -> None:
    with _running(kind) as upstream, httpx.Client() as client:
        assert upstream.kind == kind
        for _ in range(3):
            r = client.post(upstream.url, content=b"x" * 100_000)
            assert (r.status_code, r.content) == (200, b"ok")
        r = client.get(upstream.url)
        assert (r.status_code, r.content) == (200, b"ok")
        pool = client._transport._pool  # type: ignore[attr-defined]
        assert len(pool.connections) == 1, "one keep-alive connection for every request"


@pytest.mark.parametrize("kind", ["go", "python"])
def test_slow_upstream_waits_before_answering(kind: str) -> None:
    with _running(kind, delay_ms=50) as up, httpx.Client() as client:
        client.get(up.url)
        r = client.get(up.url)
        assert r.elapsed.total_seconds() >= 0.045


@pytest.mark.parametrize("variant", [1, 2, 3, 4])
def test_worker_measures_each_variant(upstream: _upstream.Upstream, variant: int) -> None:
    result = _proc.run_json("bench._worker", {"variant": variant, "mode": "sync", "url": upstream.url,
                                               "requests": 40, "warmup": 5, "metric_interval": 60.0})
    assert result["variant"] == variant and result["requests"] == 40
    assert result["cpu_us"] > 0 and result["throughput"] > 0
    assert 0 < result["p50_ms"] <= result["p99_ms"]
    assert result["peak_rss_mib"] > 10


def test_worker_crash_is_reported_with_its_stderr() -> None:
    dead = f"http://127.0.0.1:{_upstream.dead_port()}/"
    with pytest.raises(_proc.BenchCrash, match="ConnectError"):
        _proc.run_json("bench._worker", {"variant": 1, "mode": "sync", "url": dead, "requests": 1, "warmup": 0})


def _results(cpu_ratio: float, layer_us: float) -> dict[str, Any]:
    figures = {"cpu_us": 100.0, "throughput": 1000.0, "p50_ms": 1.0, "p99_ms": 2.0, "wall_s": 1.0,
               "peak_rss_mib": 50.0}
    mode = {"variants": {str(v): figures for v in (1, 2, 3, 4)}, "cpu_ratio_3_2": cpu_ratio,
            "cpu_ratio_3_4": 0.9, "throughput_ratio_3_4": 1.5, "p99_ratio_3_4": 1.0, "cpu_rounds_3_2": [cpu_ratio]}
    return {
        "meta": {"date": "2026-01-01 00:00 UTC", "mode": "full", "seconds": 1.0, "machine": "m", "versions": "v",
                 "upstream": "u", "rounds": 1},
        "timing": {"sync": mode, "threads": mode, "async": mode, "threads_slow": mode},
        "instructions": {"sync": {"2": 2e6, "3": 2.05e6, "4": 2.1e6, "ratio_3_2": 1.025, "ratio_3_4": 0.976}},
        "layer": {"layer_cpu_us": layer_us, "plain_cpu_us": 100.0, "hardened_cpu_us": 100.0 + layer_us},
    }


def test_goals_say_which_hold() -> None:
    held = {g["name"]: g["held"] for g in report.goals(_results(cpu_ratio=1.06, layer_us=19.0))}
    assert held["CPU 3/2, sync, 1 thread"] is False
    assert held["instructions 3/2, sync, 1 thread"] is False  # 1.025: issue 20's goal is 1.02
    assert held["the layer alone, CPU per request (canned transport)"] is True
    assert held["3 ahead of 4 (throughput 3/4), 16 threads, upstream answering in 10 ms"] is True
    results = _results(cpu_ratio=1.06, layer_us=25.0)
    results["instructions"]["sync"].update(ratio_3_2=1.019, runs_3=[2.04e6, 2.05e6, 2.06e6])
    results["layer"].update(layer_instructions=44_900.0, plain_instructions=550_000.0, hardened_instructions=594_900.0,
                            layer_us_from_instructions=8.2)
    table = report.markdown(results)
    assert "| instructions 3/2, sync, 1 thread | 1.019 | ≤ 1.02 | yes |" in table
    assert "| the layer alone, instructions per request (canned transport) | 44.9 k | ≤ 45 k | yes |" in table
    assert "instructions from callgrind, the median of 3 runs each" in table
    assert "| CPU 3/2, sync, 1 thread | 1.060 | ≤ 1.05 | **no** |" in table
    assert "| the layer alone, CPU per request (canned transport) | 25.0 µs | ≤ 20 µs | **no** |" in table


def test_issue_20_goals_the_async_rounds_and_the_rejection() -> None:
    results = _results(cpu_ratio=1.0, layer_us=10.0)
    rounds = [0.85, 0.95, 1.0, 1.05, 1.15]
    results["timing"]["async"] = {**results["timing"]["async"], "cpu_ratio_3_4": 1.0, "cpu_rounds_3_4": rounds}
    results["faults"] = {"reject_open": {"layer_cpu_us": 31.0, "hardened_wall_us": 150.0, "hardened_cpu_us": 150.0,
                                         "pybreaker_wall_us": 8.0, "pybreaker_cpu_us": 8.0},
                         "outage_high_rate": {"rate_per_s": 100.0, "attempts_per_request": 1.3,
                                              "attempts_per_request_second_half": 1.2},
                         "peer_outage_high_rate": {"rate_per_s": 10.0, "attempts_per_request": 3.0},
                         "outage_low_rate": {"rate_per_s": 2.0, "attempts_per_request": 3.0}}
    held = {g["name"]: g["held"] for g in report.goals(results)}
    assert held["not behind stamina + pybreaker (CPU 3/4), async, 200 concurrent, 5 rounds"] is True
    assert held["reject while the circuit is open, the layer's CPU (request built)"] is False
    # stdev 0.112: (1.96 * 0.112 / 0.02)^2 = 120.5 rounds for ±2 %, 19.3 for ±5 %
    assert report.rounds_needed(rounds) == 121 and report.rounds_needed(rounds, 0.05) == 20
    table = report.markdown(results)
    assert "over 5 rounds (standard deviation 0.112); a ±2 % answer at 95 % takes about 121 rounds" in table
    assert "| the same, the layer alone: CPU µs (request built, caller span recording) | 31.0 | 8.0 |" in table


def test_docs_block_and_readme_summary_are_replaced_and_nothing_else(tmp_path: Path) -> None:
    page, readme = tmp_path / "performance.md", tmp_path / "README.md"
    page.write_text(f"# before\n{report.BEGIN}\nold figures\n{report.END}\n## after\n")
    readme.write_text(f"# r\n{report.SUMMARY_BEGIN}\nold line\n{report.SUMMARY_END}\nrest\n")
    results = _results(cpu_ratio=1.01, layer_us=10.0)
    report.update_docs(results, page, readme)
    text = page.read_text()
    assert text.startswith(f"# before\n{report.BEGIN}\n") and text.endswith(f"{report.END}\n## after\n")
    assert "old figures" not in text and "| CPU 3/2, sync, 1 thread | 1.010 | ≤ 1.05 | yes |" in text
    line = readme.read_text()
    assert line.startswith(f"# r\n{report.SUMMARY_BEGIN}\n**Performance**") and line.endswith(
        f"{report.SUMMARY_END}\nrest\n")
    assert "old line" not in line and "goals hold" in line and line.count("\n") == 5
    report.update_docs(results, page, readme)
    assert (page.read_text(), readme.read_text()) == (text, line), "the same results change nothing"


def test_readme_without_summary_markers_is_left_alone(tmp_path: Path) -> None:
    page, readme = tmp_path / "performance.md", tmp_path / "README.md"
    page.write_text(f"{report.BEGIN}\n{report.END}\n")
    readme.write_text("# no summary here\n")
    report.update_docs(_results(cpu_ratio=1.01, layer_us=10.0), page, readme)
    assert readme.read_text() == "# no summary here\n"


def test_page_without_markers_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="bench:begin"):
        report.replace_block("# no block here\n", "x")


def test_the_committed_docs_match_the_committed_results() -> None:
    """docs/performance.md and the README line are what the generator makes of bench/RESULTS.json."""
    results = json.loads((report.ROOT / "bench" / "RESULTS.json").read_text())
    page, readme = report.PAGE.read_text(), report.README.read_text()
    assert report.replace_block(page, report.markdown(results, readme=True)) == page
    assert report.replace_block(readme, report.summary(results), report.SUMMARY_BEGIN, report.SUMMARY_END) == readme


def test_outbox_section_is_rendered_and_judged() -> None:
    results = _results(cpu_ratio=1.01, layer_us=10.0)
    results["outbox"] = {
        "mode": "full", "date": "2026-12-03 01:40 UTC",
        "deferral_and_replay": {"entries": 1000, "circuit_open_without_outbox_us": 80.0, "deferral_sqlite_us": 430.0,
                                "deferral_sqlite_p99_us": 3300.0, "replay_sqlite_us": 600.0},
        "instructions": {"requests": 2000, "plain": 621_496.0, "plain_beside_outbox": 620_777.0,
                         "get_via_outbox": 630_000.0, "beside_ratio": 0.999, "get_via_outbox_ratio": 1.0137},
    }
    held = {g["name"]: g["held"] for g in report.goals(results)}
    assert held["outbox: instructions of a client without an outbox, in a process with one / without any outbox"]
    assert held["outbox: instructions of a GET through a client given an outbox / without any outbox"] is False
    table = report.markdown(results)
    assert "**Outbox** (`python -m bench.outbox`, its own run of 2026-12-03 01:40 UTC (full mode)" in table
    assert "| the same POST deferred, sqlite (fsynced) | 0.43 ms (p99 3.3 ms) |" in table
    assert "| ... GETs through a client given an outbox (never deferred) | 630,000 (1.014x) |" in table
    assert "redis" not in table  # not measured: no row


def test_features_client_goes_through_the_hardened_pool_on_one_connection() -> None:
    from bench import features

    client = features.client(hardened=True)
    for _ in range(3):
        r = client.get(features.URL)
        assert (r.status_code, r.content) == (200, b"ok")
    pool = client._transport._pool  # type: ignore[attr-defined]
    assert vars(pool).get("_otel_hardening") is True, "the layer's pool hooks are installed (deadline.py)"
    assert len(pool.connections) == 1


def test_features_worker_runs_outside_callgrind() -> None:
    result = _proc.run_json("bench.features", {"variant": "all_every", "requests": 20, "warmup": 5})
    assert result == {"variant": "all_every", "requests": 20}


def test_features_section_is_rendered_and_judged() -> None:
    """The goal is judged at a busy upstream: slow detection plus a sampled attempt's cost times the share
    sampled at 100 requests a second (the default samples one attempt per 0.3 s: 1 in 30)."""
    from bench.features import judged

    results = _results(cpu_ratio=1.01, layer_us=10.0)
    per = {"plain": 1_365_000.0, "off": 1_415_000.0, "slow": 1_415_150.0, "quality": 1_415_300.0,
           "quality_every": 1_445_000.0, "all": 1_416_100.0, "all_every": 1_445_500.0}
    added = {v: per[v] - per["off"] for v in per if v not in ("plain", "off")}
    results["features"] = {"mode": "full", "date": "2026-12-10 10:00 UTC", "requests": 1000, "rounds": 3,
                           "per_request": per, "layer": 50_000.0, "added": added,
                           "added_pct": {v: a / 50_000.0 * 100 for v, a in added.items()},
                           "judged": judged(added, 50_000.0)}
    assert results["features"]["judged"]["sampled_share"] == pytest.approx(1 / 30)
    goal = ("issue 19 (slow requests, network quality at their defaults, pool metrics) on an upstream called "
            "100 times a second: instructions added / the layer's own")
    assert {g["name"]: g["held"] for g in report.goals(results)}[goal] is False  # 150 + 30,000 / 30: +2.30 %
    table = report.markdown(results)
    assert f"| {goal} | +2.30 % | ≤ 2 % | **no** |" in table
    assert "off minus not hardened: 50,000 instructions)" in table
    assert "| network quality, every attempt sampled | 1,445,000 | +30,000 | +60.00 % | |" in table
    assert ("| all on (defaults), an upstream called 100 times a second: slow detection + 0.033 x a sampled "
            "attempt | | +1,150 | **+2.30 %** | ≤ 2 % |") in table
    added["quality_every"] = 2_000.0
    results["features"]["judged"] = judged(added, 50_000.0)
    assert {g["name"]: g["held"] for g in report.goals(results)}[goal] is True  # 150 + 2,000 / 30: +0.43 %

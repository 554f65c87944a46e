"""The README's first command: `otel-hardening demo` walks every phase, and what it prints is what the
library measured (each phase's check passes), with OTLP export configured and nothing listening."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from otel_hardening.demo._readings import HuntSite, PoolReading, Reading, UpstreamReading
from otel_hardening.demo._scenario import PHASES as PHASE_OBJECTS
from otel_hardening.demo._summary import PhaseResult
from otel_hardening.demo._view import PLAIN_WIDTH, View, upstream_headers
from otel_hardening.stack import free_port
from otel_hardening.testing import closed_port

PHASES = ("healthy", "burst", "outage", "recovery", "saturation", "leak")
ROOT = Path(__file__).resolve().parents[2]



def _health(port: int) -> dict[str, object] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return dict(json.loads(response.read()))
    except urllib.error.HTTPError as exc:  # 503 while critical: the document is in the body
        return dict(json.loads(exc.read()))
    except OSError:
        return None


@pytest.mark.slow
def test_demo_walks_every_phase_and_the_library_shows_each(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{closed_port()}",
           "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "PYTHONWARNINGS": "default"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "otel_hardening.cli", "demo", "--duration", "20", "--plain",
         "--health-endpoint", str(port)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    documents = []
    try:
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            doc = _health(port)
            if doc is not None:
                documents.append(doc)
            time.sleep(0.5)
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    report = f"--- stdout\n{out}\n--- stderr\n{err}"
    assert proc.returncode == 0, report
    assert "Traceback" not in out + err, report

    headers = re.findall(rf"^=== phase (\d)/{len(PHASES)}: (\w+)", out, re.M)
    assert [name for _, name in headers] == list(PHASES), report
    for phase in PHASES:
        assert re.search(rf"^\| {phase} +\|", out, re.M), f"no summary row for {phase}\n{report}"
        assert re.search(rf"^PASS  {phase} ", out, re.M), f"{phase}: its check did not pass\n{report}"
    assert re.search(r"^the hunt's top site: .*otel_hardening/demo/_leak\.py:\d+ ", out, re.M), report

    # the live health endpoint served the library's report, with its checks, while the demo ran
    assert documents, report
    assert {d["status"] for d in documents} <= {"pass", "warn", "fail"}
    assert any(d["status"] == "fail" for d in documents), [d["status"] for d in documents]  # the outage
    assert any("checks" in d for d in documents)

    # nothing listens at the OTLP endpoint: said once, counted after, never a flood
    assert len(re.findall(r"OTLP export problem \(further", out)) == 1, report
    assert re.search(r"^OTLP export problems: \d+", out, re.M), report  # counted in the summary
    assert len(err.strip().splitlines()) <= 2, report


@pytest.mark.slow
def test_live_view_renders_what_was_measured(tmp_path: Path) -> None:
    """Without --plain: the rich view (its last frame, when stdout is not a terminal) and the summary."""
    env = {**os.environ, "COLUMNS": "140"}
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    result = subprocess.run(
        [sys.executable, "-m", "otel_hardening.cli", "demo", "--duration", "10", "--phases", "healthy,outage"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "Traceback" not in out + result.stderr
    assert re.search(r"phase 2/2: outage", out), out
    for label in ("upstream", "inventory", "payments", "health", "memory", "leak", "hunt", "otel_hardening log"):
        assert label in out, f"{label!r} missing from the live view:\n{out}"
    assert re.search(r"circuit payments \w+ -> open", out), out  # the library's own log record, shown
    assert re.search(r"^PASS  outage ", out, re.M), out
    assert "=== phase" not in out  # plain lines are for --plain only


@pytest.mark.slow
def test_charges_deferred_in_the_outage_are_delivered_once_after_recovery(tmp_path: Path) -> None:
    """The outbox phase: the payments upstream books each Idempotency-Key once; every charge the app saw
    deferred is booked, none twice, the library counts as many replays as deferrals, and the outbox's
    store, a temporary directory, is gone at the end."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch), "XDG_STATE_HOME": str(tmp_path / "state")}
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    result = subprocess.run(
        [sys.executable, "-m", "otel_hardening.cli", "demo", "--duration", "10", "--plain",
         "--phases", "healthy,outage,recovery"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    out = result.stdout
    report = f"--- stdout\n{out}\n--- stderr\n{result.stderr}"
    assert result.returncode == 0 and "Traceback" not in out + result.stderr, report
    verdict = re.search(r"^PASS  recovery .* delivered (\d+) of the (\d+) deferred charges, 0 twice", out, re.M)
    assert verdict, report
    delivered, deferred = map(int, verdict.groups())
    assert deferred > 0 and delivered == deferred, report
    header = next(line for line in out.splitlines() if re.match(r"^\| phase ", line))
    columns = [c.strip() for c in header.strip("|").split("|")]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in out.splitlines()
            if re.match(r"^\| (healthy|outage|recovery) ", line)]
    total = {name: sum(int(row[columns.index(name)]) for row in rows) for name in ("deferred", "replayed", "letters")}
    assert total == {"deferred": deferred, "replayed": deferred, "letters": 0}, report
    assert re.search(r"\| outbox \d+ waiting; \d+ deferred, \d+ replayed", out), report  # the plain status line
    assert list(scratch.iterdir()) == [] and not (tmp_path / "state").exists(), "the demo left files behind"


# -- the view at 80x24 and at 120 columns: rendered in process by rich, nothing cut ---------------

def _reading(recovering: tuple[str, ...] = (), at: float = 1000.0, hold: float | None = 30.0,
             only_held: bool = False) -> Reading:
    """A busy moment: every column and status line filled, long reasons, export trouble, a hunt."""
    outcomes = {"success": 11380, "success_after_retry": 86, "failure": 4, "failure_after_retry": 9,
                "rejected_circuit_open": 3170, "rejected_retry_budget": 50, "pool_timeout": 318}
    pools = {"inventory": (PoolReading(4, 0, 4, 4, 120, 51.0), "poor", 96),
             "payments": (PoolReading(1, 2, 100), "excellent", 0)}
    ups = {name: UpstreamReading(name, state, dict(outcomes), 12_900, 74.0, *pools[name])
           for name, state in (("inventory", "closed"), ("payments", "half_open"))}
    reasons = ("upstream:payments: circuit open (recovering: held critical until stable for 30s)",
               "leak:memory: suspected memory leak (growing 2.1e+06/s)")
    return Reading(ups, "critical", reasons[:1] if only_held else reasons,
                   110_000_000, 2_100_000, True,
                   HuntSite("/src/otel_hardening/demo/_leak.py", 21, 'entry = b"x" * size', 1_800_000),
                   3, "Failed to export metrics to 127.0.0.1:4317, error code: StatusCode.UNAVAILABLE",
                   tuple(f"otel_hardening: circuit payments open -> half_open ({i}), a long record to wrap"
                         for i in range(6)), 6, {"CircuitOpenError": 906}, at, recovering, hold)


def _render(width: int, renderable: Any, height: int = 24) -> list[str]:
    console = Console(width=width, height=height, record=True, file=io.StringIO(), color_system=None)
    console.print(renderable)
    return console.export_text().rstrip("\n").splitlines()


def _header_lines(lines: list[str], first: str) -> list[str]:
    """The lines of a table's header: from the first holding ``first`` up to the rule under it."""
    start = next(i for i, line in enumerate(lines) if re.search(rf"\b{re.escape(first)}\b", line))
    while start > 0 and lines[start - 1].strip() and "─" not in lines[start - 1] and ":" not in lines[start - 1]:
        start -= 1
    end = next(i for i in range(start, len(lines)) if "─" in lines[i])
    return lines[start:end]


def _assert_whole(headers: Sequence[str], header_lines: list[str]) -> None:
    text = "\n".join(header_lines)
    assert "…" not in text, text
    for header in headers:
        for word in header.split():
            assert re.search(rf"(?<!\S){re.escape(word)}(?!\S)", text), f"header word {word!r} cut:\n{text}"


@pytest.mark.parametrize("width", [80, 120])
def test_live_view_fits_the_terminal_with_every_header_whole(width: int) -> None:
    view = View(Console(width=width, file=io.StringIO()), plain=False, phases=PHASE_OBJECTS)
    view.console = Console(width=width, height=24, record=True, file=io.StringIO(), color_system=None)
    lines = _render(width, view.frame(_reading(), PHASE_OBJECTS[3], 3, 12, 18, 40, 50_000_000))
    assert all(len(line) <= width for line in lines)
    short = width < 100
    headers = upstream_headers(short)
    _assert_whole(headers, _header_lines(lines, "upstream"))
    text = "\n".join(lines)
    if short:
        for i, phase in enumerate(PHASE_OBJECTS):  # the longest story and caption too
            frame = _render(width, view.frame(_reading(), phase, i, 12, 18, 40, 50_000_000))
            assert len(frame) <= 24, f"{len(frame)} lines at 80x24 in {phase.name}:\n" + "\n".join(frame)
        legend = text[text.index("ok+r ok after retry"):text.index("\nhealth")]
        for abbreviation in ("ok+r", "fail+r", "rej:c", "rej:b", "att/c", "budget"):
            assert re.search(rf"(^|· ){re.escape(abbreviation)} \w", legend, re.M), f"{abbreviation}:\n{legend}"
    else:
        assert "attempts/call" in text and "ok+r" not in text
    for label in ("health", "memory", "hunt", "export", "app saw", "otel_hardening log", "look at:"):
        assert re.search(rf"^[│ ]*{re.escape(label)}|─ {re.escape(label)}", text, re.M), f"{label!r}:\n{text}"
    assert re.search(r"^memory .*: leak SUSPECTED *$", text, re.M), text
    # per upstream: its pool (active/max, waiting), quality class and slow requests; pool timeouts in the table
    assert re.search(r"^inventory +pool 4/4 active, 4 waiting · quality poor · 96 slow requests *$", text, re.M), text
    payments = r"^payments +pool 1/100 active \+ 2 idle · quality excellent · 0 slow requests *$"
    assert re.search(payments, text, re.M), text
    assert re.search(r"^inventory .* 318 +1\.\d\dx", text, re.M), text


@pytest.mark.parametrize("width", [80, 120, 160])
def test_summary_keeps_every_header_whole(width: int) -> None:
    results = []
    for phase in PHASE_OBJECTS:
        result = PhaseResult(phase, 9.0, {"success": 1381, "success_after_retry": 110, "failure": 21,
                                          "rejected_circuit_open": 859, "rejected_retry_budget": 90}, 1500.0,
                             {"payments": {"closed", "open", "half_open"}}, "critical", phase.name == "leak",
                             "otel_hardening/demo/_leak.py:21", {"payments": "closed"}, held=phase.name == "recovery")
        results.append(result)
    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    lines = _render(width, View(console, plain=False, phases=PHASE_OBJECTS).summary(results, _reading()))
    text = "\n".join(lines)
    assert all(len(line) <= width for line in lines), text
    table = text[:text.index("PASS")]
    assert "…" not in table, table
    for measure in ("calls", "ok after retry", "failed", "rejected (circuit)", "rejected (budget)", "attempts/call",
                    "pool timeouts", "slow requests", "payments", "circuit", "health", "leak", *PHASES):
        for word in measure.split():
            assert re.search(rf"(?<![\w(]){re.escape(word)}(?![\w)])", table), f"{word!r} cut at {width}:\n{table}"
    assert "(hold)" in table and "recovery hold (30 s)" in text, text
    assert "half_open" in table and "1381" in table


def test_the_plain_summary_table_is_never_cut() -> None:
    """CI once saw the plain table lose its 'replayed' header: a phase's circuit went closed, open and
    half_open, the cells grew past the plain console's 180 columns, and rich cut the headers."""
    results = [PhaseResult(phase, 9.0, {"success": 1_381_000, "success_after_retry": 110_000, "failure": 21_000,
                                        "rejected_circuit_open": 859_000, "rejected_retry_budget": 90_000}, 1_500_000.0,
                           {"payments": {"closed", "open", "half_open"}}, "critical", phase.name == "leak",
                           "otel_hardening/demo/_leak.py:21", {"payments": "closed"}, held=True)
               for phase in PHASE_OBJECTS]
    out = io.StringIO()
    console = Console(width=PLAIN_WIDTH, no_color=True, highlight=False, file=out)
    console.print(View(console, plain=True, phases=PHASE_OBJECTS).summary(results, _reading()))
    text = out.getvalue()
    table = text[:text.index("PASS")]
    assert "…" not in table, table
    header = next(line for line in table.splitlines() if re.match(r"^\| phase ", line))
    for column in ("calls", "deferred", "replayed", "letters", "requests", "health", "leak"):
        assert f" {column} " in header, header
    assert "closed, open, half_open" in table and "critical (hold)" in table, table
    assert max(len(line) for line in text.splitlines() if not line.startswith("|") and "(hold)" not in line) < 400


def test_recovery_hold_is_shown_as_a_countdown_not_a_bare_critical() -> None:
    view = View(Console(width=80, file=io.StringIO()), plain=False, phases=PHASE_OBJECTS)
    held = ("upstream:payments",)
    first = view.health_text(_reading(held, at=1000.0, only_held=True), 1).plain
    assert first.startswith("recovering — healthy in 30 s (hold)"), first
    later = view.health_text(_reading(held, at=1012.4, only_held=True), 1).plain
    assert later.startswith("recovering — healthy in 18 s (hold)") and "reported critical until then" in later
    # another component still bad: the status stays, the hold is said beside it
    mixed = view.health_text(_reading(held, at=1013.0), 1).plain
    assert mixed.startswith("critical  recovering — 17 s of hold left; leak:memory"), mixed
    assert view.health_text(_reading(), 1).plain.startswith("critical  upstream:payments")
    # no running monitor to read the hold from: no countdown is invented
    assert "recovering —" not in view.health_text(_reading(held, hold=None), 1).plain


def test_each_phase_says_what_to_look_at() -> None:
    for phase in PHASE_OBJECTS:
        assert phase.look and phase.look != phase.story


def test_the_view_reads_the_hold_from_the_running_health_monitor() -> None:
    """What the countdown rests on: health marks a component it holds worse, and the running monitor's
    configuration carries the hold (not a number of the demo's own)."""
    from otel_hardening import health
    from otel_hardening.demo._readings import RECOVERING
    from otel_hardening.health._model import ComponentStatus, Damper, Status

    damper = Damper(hold=7.0)
    down = ComponentStatus("payments", "circuit", Status.CRITICAL, "circuit open")
    up = ComponentStatus("payments", "circuit", Status.HEALTHY, "circuit closed")
    damper.apply([down], now=0.0)
    [held], status = damper.apply([up], now=1.0)
    assert status is Status.CRITICAL and RECOVERING in held.reason
    [free], status = damper.apply([up], now=8.0)
    assert status is Status.HEALTHY and RECOVERING not in free.reason

    assert health.running_config() is None
    health.start(health.HealthConfig(recovery_hold=7.0))
    try:
        config = health.running_config()
        assert config is not None and config.recovery_hold == 7.0
    finally:
        health.stop()
    assert health.running_config() is None


def test_phases_accepts_the_saturation_phase_in_any_order() -> None:
    from otel_hardening.demo._scenario import parse_phases

    assert [p.name for p in parse_phases("saturation,healthy")] == ["saturation", "healthy"]
    assert "saturation" in [p.name for p in parse_phases(None)]


def test_the_leak_phase_takes_only_a_hunt_reported_after_it_began() -> None:
    """CI once saw a false flag in the outage phase: its hunt (an SDK deque) was still the latest report
    when the leak phase began, and the phase took it as its own, so its check failed though the leak's
    own hunt was yet to come."""
    from dataclasses import replace

    leak = next(p for p in PHASE_OBJECTS if p.name == "leak")
    earlier = HuntSite("/sdk/util/__init__.py", 40, "self._dq = deque(maxlen=maxlen)", 0, reported_ns=1)
    ours = HuntSite("/src/otel_hardening/demo/_leak.py", 21, 'entry = b"x" * size', 7_000_000, reported_ns=2)
    result = PhaseResult(leak, 7.0, hunt_before=earlier)
    result.observe(replace(_reading(), hunt=earlier, leak_suspected=True))
    assert result.leak_seen and result.hunt is None
    assert result.verdict()[0] is False
    result.observe(replace(_reading(), hunt=ours))
    assert result.hunt is not None and "demo/_leak.py" in result.hunt
    assert result.verdict()[0] is True
    # a second hunt at the same site is a new report: only the timestamp tells them apart
    again = replace(ours, reported_ns=3)
    assert again != ours

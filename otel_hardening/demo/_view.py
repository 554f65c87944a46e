"""The demo's output: a live rich view, or plain lines for logs and CI, and the summary table."""

from __future__ import annotations

from dataclasses import dataclass, field

from rich import box
from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from otel_hardening.demo._readings import OUTCOME_COLUMNS, SHORT, Reading
from otel_hardening.demo._scenario import Phase

STATE_STYLE = {"closed": "green", "half_open": "yellow", "open": "bold red", "-": "dim"}
HEALTH_STYLE = {"healthy": "green", "degraded": "yellow", "critical": "bold red"}


def mib(n: float | None) -> str:
    return "-" if n is None else f"{n / 2**20:.1f} MiB"


def amplification(attempts: float, calls: float) -> str:
    return f"{attempts / calls:.2f}x" if calls else "-"


@dataclass
class PhaseResult:
    """What was measured while one phase ran (differences of the cumulative readings)."""

    phase: Phase
    seconds: float
    outcomes: dict[str, float] = field(default_factory=dict)
    attempts: float = 0.0
    circuits_seen: dict[str, set[str]] = field(default_factory=dict)
    worst_health: str = "healthy"
    leak_seen: bool = False
    hunt: str | None = None
    end_circuits: dict[str, str] = field(default_factory=dict)

    @property
    def calls(self) -> float:
        return float(sum(self.outcomes.values()))

    def verdict(self) -> tuple[bool, str]:
        """Did the measurements show what the phase is about? (passed, what was checked)"""
        o = {k: self.outcomes.get(k, 0.0) for k in OUTCOME_COLUMNS}
        name = self.phase.name
        if name == "healthy":
            return o["success"] > 0 and self.calls == o["success"], "every call succeeded first time"
        if name == "burst":
            return o["success_after_retry"] > 0, "retries turned 503s into successes"
        if name == "outage":
            return (o["rejected_circuit_open"] > 0 and "open" in self.circuits_seen.get("payments", set()),
                    "payments circuit opened and rejected calls without I/O")
        if name == "recovery":
            return (self.end_circuits.get("payments") == "closed" and o["success"] > 0,
                    "payments circuit closed again")
        if name == "leak":
            ok = self.leak_seen and self.hunt is not None and "demo/_leak.py" in self.hunt
            return ok, "leak flagged and the hunt named the leaking line"
        return True, ""


class View:
    """Renders readings; ``plain`` prints lines instead of a live screen."""

    def __init__(self, console: Console, plain: bool, phases: tuple[Phase, ...]) -> None:
        self.console = console
        self.plain = plain
        self.phases = phases
        self._events_seen = 0
        self._last_leak = False
        self._last_hunt: str | None = None
        self._last_health: str | None = None
        self._export_reported = False

    # -- live ------------------------------------------------------------------------------------

    def frame(self, r: Reading, phase: Phase, index: int, into: float, length: float, elapsed: float,
              rss_start: int | None) -> RenderableType:
        head = Table.grid(expand=True, padding=(0, 1))
        head.add_column(ratio=1)
        head.add_column(width=42)
        title = Text.assemble(("otel-hardening demo", "bold"), f"  phase {index + 1}/{len(self.phases)}: ",
                              (phase.name, "bold cyan"), f"  ({into:.0f}/{length:.0f} s, total {elapsed:.0f} s)")
        head.add_row(title, ProgressBar(total=max(length, 0.001), completed=min(into, length), width=40))
        head.add_row(Text(phase.story, style="italic"), "")

        ups = Table(box=box.SIMPLE_HEAD, expand=True)
        ups.add_column("upstream")
        ups.add_column("circuit")
        for outcome in OUTCOME_COLUMNS:
            ups.add_column(SHORT[outcome], justify="right")
        ups.add_column("attempts/call", justify="right", no_wrap=True)  # of calls that reached the network
        ups.add_column("retry budget", justify="right")
        for u in r.upstreams.values():
            budget = "-" if u.budget_available is None else f"{u.budget_available:.0f}"
            ups.add_row(u.name, Text(u.circuit, style=STATE_STYLE.get(u.circuit, "")),
                        *(f"{u.outcomes.get(o, 0):.0f}" for o in OUTCOME_COLUMNS),
                        amplification(u.attempts, u.calls - u.outcomes.get("rejected_circuit_open", 0)), budget)

        status = Table.grid(padding=(0, 2))
        status.add_column(style="bold")
        status.add_column()
        reasons = "; ".join(r.health_reasons[:3]) or "all checks pass"
        status.add_row("health", Text.assemble((r.health, HEALTH_STYLE.get(r.health, "")), f"  {reasons}"))
        growth = f"{r.rss_growth_rate / 1024:+.0f} KiB/s trend" if r.rss_growth_rate else "trend: warming up"
        since = f", {(r.rss - rss_start) / 2**20:+.1f} MiB since start" if r.rss and rss_start else ""
        status.add_row("memory", f"RSS {mib(r.rss)}{since}; {growth}")
        status.add_row("leak", Text("SUSPECTED", style="bold red") if r.leak_suspected else Text("no", style="green"))
        status.add_row("hunt", str(r.hunt) if r.hunt else "-")
        if r.export_errors:
            status.add_row("export", Text(f"{r.export_errors} OTLP export problems, last: {r.last_export_error}",
                                          style="yellow"))
        if r.app_errors:
            status.add_row("app saw", ", ".join(f"{k} x{v}" for k, v in sorted(r.app_errors.items())))
        events = Text("\n".join(r.events[-4:]) or "-", style="dim")
        return Group(head, ups, status, Panel(events, title="otel_hardening log", title_align="left",
                                              box=box.ROUNDED))

    # -- plain -----------------------------------------------------------------------------------

    def phase_started(self, phase: Phase, index: int, length: float) -> None:
        self._line(f"=== phase {index + 1}/{len(self.phases)}: {phase.name} ({length:.1f} s) - {phase.story}")

    def status_line(self, r: Reading, phase: Phase, elapsed: float) -> None:
        circuits = " ".join(f"{u.name}={u.circuit}" for u in r.upstreams.values())
        counts = " ".join(f"{o}={r.total(o):.0f}" for o in OUTCOME_COLUMNS if r.total(o))
        reasons = f" ({'; '.join(r.health_reasons[:2])})" if r.health_reasons else ""
        amp = amplification(r.attempts, r.total() - r.total("rejected_circuit_open"))
        self._line(f"[{elapsed:6.1f}s] {phase.name:8} circuits: {circuits} | calls: {counts} | "
                   f"attempts/call {amp} | health {r.health}{reasons} | "
                   f"RSS {mib(r.rss)} leak={'yes' if r.leak_suspected else 'no'}")

    def news(self, r: Reading, elapsed: float) -> None:
        """One line for each new thing worth a line: a log record, leak flag, hunt, health change."""
        new = r.events_total - self._events_seen
        self._events_seen = r.events_total
        for event in r.events[-new:] if new > 0 else ():
            self._line(f"[{elapsed:6.1f}s] log: {event}")
        if r.leak_suspected != self._last_leak:
            self._last_leak = r.leak_suspected
            self._line(f"[{elapsed:6.1f}s] leak detector: memory leak {'SUSPECTED' if r.leak_suspected else 'cleared'}"
                       f" (RSS trend {r.rss_growth_rate / 1024:+.0f} KiB/s)")
        hunt = str(r.hunt) if r.hunt else None
        if hunt and hunt != self._last_hunt:
            self._last_hunt = hunt
            self._line(f"[{elapsed:6.1f}s] leak hunt: top growing site {hunt}")
        if r.health != self._last_health:
            self._last_health = r.health
            why = f" - {r.health_reasons[0]}" if r.health_reasons else ""
            self._line(f"[{elapsed:6.1f}s] health: {r.health}{why}")
        if r.export_errors and not self._export_reported:
            self._export_reported = True
            self._line(f"[{elapsed:6.1f}s] OTLP export problem (further ones are counted, not printed): "
                       f"{r.last_export_error}")

    def _line(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    # -- the end ---------------------------------------------------------------------------------

    def summary(self, results: list[PhaseResult], final: Reading) -> Group:
        table = Table(title="otel-hardening demo: what the library measured, phase by phase",
                      box=box.ASCII if self.plain else box.ROUNDED, title_justify="left")
        for column in ("phase", "s", "calls", "ok", "ok after retry", "failed", "rejected (circuit)",
                       "rejected (budget)", "attempts/call", "payments circuit", "health", "leak"):
            table.add_column(column, justify="left" if column in ("phase", "payments circuit", "health") else "right")
        checks = []
        for res in results:
            o = {k: res.outcomes.get(k, 0.0) for k in OUTCOME_COLUMNS}
            states = [s for s in ("closed", "open", "half_open") if s in res.circuits_seen.get("payments", set())]
            table.add_row(res.phase.name, f"{res.seconds:.0f}", f"{res.calls:.0f}", f"{o['success']:.0f}",
                          f"{o['success_after_retry']:.0f}", f"{o['failure'] + o['failure_after_retry']:.0f}",
                          f"{o['rejected_circuit_open']:.0f}", f"{o['rejected_retry_budget']:.0f}",
                          amplification(res.attempts, res.calls - o["rejected_circuit_open"]),
                          ",".join(states) or "-", res.worst_health, "yes" if res.leak_seen else "no")
            ok, what = res.verdict()
            checks.append(Text.assemble(("PASS" if ok else "MISS", "green" if ok else "yellow"),
                                        f"  {res.phase.name:9} {what}"))
        lines: list[RenderableType] = [table, *checks]
        lines.append(Text(f"final health: {final.health}"))
        if final.hunt:
            lines.append(Text(f"the hunt's top site: {final.hunt}"))
        if final.export_errors:
            lines.append(Text(f"OTLP export problems: {final.export_errors} (last: {final.last_export_error})"))
        return Group(*lines)

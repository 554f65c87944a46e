"""The demo's output: a live rich view, or plain lines for logs and CI, and the summary table.

The live view fits an 80x24 terminal: below the width where every column header fits whole, the
upstream table uses short headers explained by a legend, and the log shows fewer, one-line entries.
Under the table, one line per upstream: its pool, network quality class and slow requests."""

from __future__ import annotations

import math

from rich import box
from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from otel_hardening.demo._readings import OUTCOME_COLUMNS, Reading
from otel_hardening.demo._scenario import Phase
from otel_hardening.demo._summary import PhaseResult, amplification, fits, summary

__all__ = ["PhaseResult", "View", "amplification"]

STATE_STYLE = {"closed": "green", "half_open": "yellow", "open": "bold red", "-": "dim"}
HEALTH_STYLE = {"healthy": "green", "degraded": "yellow", "critical": "bold red"}
QUALITY_STYLE = {"excellent": "green", "good": "green", "fair": "yellow", "poor": "bold red", "offline": "bold red"}
FULL = {"success": "ok", "success_after_retry": "ok after\nretry", "failure": "failed",
        "failure_after_retry": "failed\nafter retry", "rejected_circuit_open": "rejected\n(circuit)",
        "rejected_retry_budget": "rejected\n(budget)", "pool_timeout": "pool\ntimeout"}
"""Headers broken by hand: every column is no_wrap, so rich never cuts a word to make the table fit."""
ABBREVIATED = {"success": "ok", "success_after_retry": "ok+r", "failure": "fail", "failure_after_retry": "fail+r",
               "rejected_circuit_open": "rej:c", "rejected_retry_budget": "rej:b", "pool_timeout": "p:to"}
FULL_TAIL, SHORT_TAIL = ("attempts/call", "retry\nbudget"), ("att/c", "budget")
LEGEND = ("ok+r ok after retry · fail+r failed after retry · rej:c rejected by the open circuit · "
          "rej:b rejected by the retry budget · p:to PoolTimeout · att/c attempts per call that reached the "
          "network · budget retry tokens left")


def mib(n: float | None) -> str:
    return "-" if n is None else f"{n / 2**20:.1f} MiB"


def count(n: float, short: bool) -> str:
    return f"{n / 1000:.0f}k" if short and n >= 10_000 else f"{n:.0f}"


def upstream_headers(short: bool) -> tuple[str, ...]:
    names = ABBREVIATED if short else FULL
    return ("upstream", "circuit", *(names[o] for o in OUTCOME_COLUMNS), *(SHORT_TAIL if short else FULL_TAIL))


class Recovery:
    """How long health's recovery hold still keeps a component at its worse state.

    Health marks a held component in its report; the hold itself is the running monitor's. A
    component's hold started at the first report that marked it."""

    def __init__(self) -> None:
        self._since: dict[str, float] = {}

    def left(self, r: Reading) -> float | None:
        self._since = {name: self._since.get(name, r.health_time) for name in r.recovering}
        if not r.recovering or r.recovery_hold is None:
            return None
        return max(0.0, max(r.recovery_hold - (r.health_time - since) for since in self._since.values()))


PLAIN_WIDTH = 1000
"""The plain console's width (logs, CI, programs reading the summary table). The table's columns are
no_wrap, so a console narrower than the table cuts headers and cells with an ellipsis; its natural width
grows with what the cells hold (a circuit that went closed, open, half_open in one phase, a "(hold)"),
and 180 columns was once too few. Lines of text are never padded to this width."""


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
        self._recovery = Recovery()

    # -- live ------------------------------------------------------------------------------------

    def frame(self, r: Reading, phase: Phase, index: int, into: float, length: float, elapsed: float,
              rss_start: int | None) -> RenderableType:
        ups = self._upstreams(r, short=False)
        short = not fits(self.console, ups)
        if short:
            ups = self._upstreams(r, short=True)
        head = Table.grid(expand=True, padding=(0, 1))
        head.add_column(ratio=1)
        bar = 16 if short else 40
        head.add_column(width=bar, no_wrap=True)
        where = f" {into:.0f}/{length:.0f} s" if short else f"  ({into:.0f}/{length:.0f} s, total {elapsed:.0f} s)"
        title = Text.assemble(("otel-hardening demo", "bold"), f" phase {index + 1}/{len(self.phases)}: ",
                              (phase.name, "bold cyan"), where)
        head.add_row(title, ProgressBar(total=max(length, 0.001), completed=min(into, length), width=bar))
        parts: list[RenderableType] = [head, Text(phase.story, style="italic"),
                                        Text.assemble(("look at: ", "bold"), phase.look), ups, self._links(r, short)]
        if short:
            parts.append(Text(LEGEND, style="dim"))

        status = Table.grid(padding=(0, 1 if short else 2), expand=True)
        status.add_column(style="bold", no_wrap=True, width=len("app saw"))
        status.add_column(no_wrap=short, overflow="ellipsis", ratio=1)
        status.add_row("health", self.health_text(r, reasons=1 if short else 3))
        growth = f"{r.rss_growth_rate / 1024:+.0f} KiB/s trend" if r.rss_growth_rate else "trend warming up"
        since = f" ({(r.rss - rss_start) / 2**20:+.1f} MiB since start)" if r.rss and rss_start else ""
        leak = Text("leak SUSPECTED", style="bold red") if r.leak_suspected else Text("no leak", style="green")
        status.add_row("memory", Text.assemble(f"RSS {mib(r.rss)}{since}, {growth}: ", leak))
        status.add_row("outbox", str(r.outbox))
        status.add_row("hunt", str(r.hunt) if r.hunt else "-")
        if r.export_errors:
            status.add_row("export", Text(f"{r.export_errors} OTLP export problems, last: {r.last_export_error}",
                                          style="yellow"))
        if r.app_errors:
            status.add_row("app saw", ", ".join(f"{k} x{v}" for k, v in sorted(r.app_errors.items())))
        events = Text("\n".join(r.events[-2 if short else -4:]) or "-", style="dim", no_wrap=short,
                      overflow="ellipsis")
        parts += [status, Panel(events, title="otel_hardening log", title_align="left", box=box.ROUNDED)]
        return Group(*parts)

    def _upstreams(self, r: Reading, short: bool) -> Table:
        ups = Table(box=box.SIMPLE_HEAD, expand=not short, show_edge=False, pad_edge=False, collapse_padding=True)
        for i, header in enumerate(upstream_headers(short)):
            ups.add_column(header, justify="left" if i < 2 else "right", no_wrap=True)
        for u in r.upstreams.values():
            budget = "-" if u.budget_available is None else f"{u.budget_available:.0f}"
            ups.add_row(u.name, Text(u.circuit, style=STATE_STYLE.get(u.circuit, "")),
                        *(count(u.outcomes.get(o, 0), short) for o in OUTCOME_COLUMNS),
                        amplification(u.attempts, u.calls - u.outcomes.get("rejected_circuit_open", 0)), budget)
        return ups

    def _links(self, r: Reading, short: bool) -> Table:
        """Per upstream: its pool now, its network quality class, its slow requests so far."""
        links = Table.grid(padding=(0, 2))
        links.add_column(no_wrap=True)
        links.add_column(no_wrap=short, overflow="ellipsis")
        for u in r.upstreams.values():
            quality = u.quality or "-"
            links.add_row(u.name, Text.assemble(f"{u.pool} · quality ", (quality, QUALITY_STYLE.get(quality, "dim")),
                                                f" · {count(u.slow, short)} slow requests"))
        return links

    def health_text(self, r: Reading, reasons: int) -> Text:
        """The status and why; while the recovery hold keeps a component worse, how long it still holds."""
        left = self._recovery.left(r)
        held = set(r.recovering)
        others = [reason for reason in r.health_reasons if reason.split(": ", 1)[0] not in held]
        if left is None:
            why = "; ".join(r.health_reasons[:reasons]) or "all checks pass"
            return Text.assemble((r.health, HEALTH_STYLE.get(r.health, "")), f"  {why}")
        if not others:
            return Text.assemble(("recovering", "yellow"), f" — healthy in {math.ceil(left)} s (hold)",
                                 (f"; reported {r.health} until then", "dim"))
        return Text.assemble((r.health, HEALTH_STYLE.get(r.health, "")),
                             f"  recovering — {math.ceil(left)} s of hold left; {'; '.join(others[:reasons])}")

    # -- plain -----------------------------------------------------------------------------------

    def phase_started(self, phase: Phase, index: int, length: float) -> None:
        self._line(f"=== phase {index + 1}/{len(self.phases)}: {phase.name} ({length:.1f} s) - {phase.story}")

    def status_line(self, r: Reading, phase: Phase, elapsed: float) -> None:
        circuits = " ".join(f"{u.name}={u.circuit}" for u in r.upstreams.values())
        counts = " ".join(f"{o}={r.total(o):.0f}" for o in OUTCOME_COLUMNS if r.total(o))
        amp = amplification(r.attempts, r.total() - r.total("rejected_circuit_open"))
        links = " ".join(f"{u.name}=[{u.pool}, quality {u.quality or '-'}, {u.slow:.0f} slow]"
                         for u in r.upstreams.values())
        self._line(f"[{elapsed:6.1f}s] {phase.name:8} circuits: {circuits} | calls: {counts} | "
                   f"attempts/call {amp} | {links} | outbox {r.outbox} | "
                   f"health {self.health_text(r, reasons=2).plain} | RSS {mib(r.rss)} "
                   f"leak={'yes' if r.leak_suspected else 'no'}")

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
        return summary(self.console, results, final, self.plain)

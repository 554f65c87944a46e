"""The demo's last screen: what the library measured in each phase, and each phase's check.

As wide as the terminal allows: one row per phase when every column fits, else one column per phase
(the measures as row labels, in full words; closer together, then broken over two lines, where that is
still too wide), so no header is ever cut."""

from __future__ import annotations

from dataclasses import dataclass, field

from rich import box
from rich.console import Console, Group, RenderableType
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from otel_hardening.demo._readings import OUTCOME_COLUMNS, HuntSite, OutboxReading, Reading
from otel_hardening.demo._scenario import Phase

TITLE = "otel-hardening demo: what the library measured, phase by phase"
MEASURES = ("s", "calls", "ok", "ok after retry", "failed", "rejected (circuit)", "rejected (budget)",
            "pool timeouts", "attempts/call", "payments circuit", "deferred", "replayed", "dead letters",
            "slow requests", "health", "leak")
BROKEN = {"ok after retry": "ok after\nretry", "rejected (circuit)": "rejected\n(circuit)",
          "rejected (budget)": "rejected\n(budget)", "payments circuit": "payments\ncircuit",
          "dead letters": "dead\nletters", "pool timeouts": "pool\ntimeouts", "slow requests": "slow\nrequests"}
"""Headers broken by hand: every column is no_wrap, so rich never cuts a word to make the table fit."""
LEFT = frozenset({"phase", "payments circuit", "health"})


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
    hunt_before: HuntSite | None = None
    """The latest hunt when the phase began: an earlier phase's report is not this phase's."""
    end_circuits: dict[str, str] = field(default_factory=dict)
    held: bool = False
    """The phase ended while health still waited out its recovery hold."""
    outbox: OutboxReading = field(default_factory=OutboxReading)
    """What the outbox did in the phase (differences; ``waiting`` at its end)."""
    delivery: tuple[int, int, int] | None = None
    """Recovery: (writes deferred so far, of them never applied by the upstream, applied twice)."""
    slow: float = 0.0
    """Slow requests the library counted in the phase."""
    waiting_peak: float = 0.0
    """The most requests seen waiting for a pool connection at once."""
    queued: float = 0.0
    """Attempts that waited for a pool connection (``time_in_queue`` samples) in the phase."""
    queue_seconds: float = 0.0
    app_pool_timeouts: float = 0.0
    """PoolTimeouts the application saw, and the library counted as ``pool_timeout``: since the start."""
    library_pool_timeouts: float = 0.0
    foreign_errors: int = 0
    """Exceptions the application saw in the phase that are neither httpx's nor the outbox's deferral."""

    def observe(self, r: Reading) -> None:
        """Fold one reading taken while the phase ran into what it saw."""
        for name, upstream in r.upstreams.items():
            self.circuits_seen.setdefault(name, set()).add(upstream.circuit)
        rank = {"healthy": 0, "degraded": 1, "critical": 2}
        if rank.get(r.health, 0) > rank.get(self.worst_health, 0):
            self.worst_health = r.health
        self.leak_seen = self.leak_seen or r.leak_suspected
        self.waiting_peak = max(self.waiting_peak, r.upstream_total("waiting"))
        if r.hunt is not None and r.hunt != self.hunt_before and self.phase.name == "leak":
            self.hunt = str(r.hunt)

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
            closed = self.end_circuits.get("payments") == "closed" and o["success"] > 0
            if self.delivery is None:
                return closed, "payments circuit closed again"
            deferred, missing, twice = self.delivery
            return (closed and deferred > 0 and missing == 0 and twice == 0,
                    f"payments circuit closed again; the outbox delivered {deferred - missing} of the {deferred} "
                    f"deferred charges, {twice} twice (the upstream's Idempotency-Key check)")
        if name == "saturation":
            timeouts = o["pool_timeout"]
            counted = self.app_pool_timeouts == self.library_pool_timeouts
            ok = (self.queued > 0 and timeouts > 0 and counted and self.slow > 0 and self.foreign_errors == 0)
            wait = f", {self.queue_seconds / self.queued:.2f} s on average" if self.queued else ""
            return ok, (f"the pool filled: {self.queued:.0f} waits for a connection{wait}, up to "
                        f"{self.waiting_peak:.0f} at once; {timeouts:.0f} PoolTimeouts counted as pool_timeout "
                        f"({self.library_pool_timeouts:.0f} in all, the app saw {self.app_pool_timeouts:.0f}, "
                        f"{'only httpx errors' if not self.foreign_errors else f'{self.foreign_errors} not httpx'}"
                        f"); {self.slow:.0f} slow requests counted")
        if name == "leak":
            ok = self.leak_seen and self.hunt is not None and "demo/_leak.py" in self.hunt
            return ok, "leak flagged and the hunt named the leaking line"
        return True, ""

    def cells(self, stacked: bool = False) -> tuple[str, ...]:
        """The values of MEASURES, in order; ``stacked``: the multi-word ones one word a line."""
        o = {k: self.outcomes.get(k, 0.0) for k in OUTCOME_COLUMNS}
        states = [s for s in ("closed", "open", "half_open") if s in self.circuits_seen.get("payments", set())]
        sep = "\n" if stacked else " "
        health = f"{self.worst_health}{sep}(hold)" if self.held else self.worst_health
        return (f"{self.seconds:.0f}", f"{self.calls:.0f}", f"{o['success']:.0f}", f"{o['success_after_retry']:.0f}",
                f"{o['failure'] + o['failure_after_retry']:.0f}", f"{o['rejected_circuit_open']:.0f}",
                f"{o['rejected_retry_budget']:.0f}", f"{o['pool_timeout']:.0f}",
                amplification(self.attempts, self.calls - o["rejected_circuit_open"]),
                ("\n" if stacked else ", ").join(states) or "-", f"{self.outbox.deferred:.0f}",
                f"{self.outbox.replayed:.0f}", f"{self.outbox.dead_lettered:.0f}", f"{self.slow:.0f}", health,
                "yes" if self.leak_seen else "no")


def by_phase_rows(results: list[PhaseResult], plain: bool) -> Table:
    table = Table(title=TITLE, box=box.ASCII if plain else box.ROUNDED, title_justify="left")
    for column in ("phase", *MEASURES):
        table.add_column(BROKEN.get(column, column), justify="left" if column in LEFT else "right", no_wrap=True)
    for res in results:
        table.add_row(res.phase.name, *res.cells())
    return table


def by_phase_columns(results: list[PhaseResult], squeeze: int = 0) -> Table:
    """``squeeze`` 1: one space between columns instead of two; 2: also the row labels broken as the
    headers of the other layout (narrower, taller)."""
    table = Table(title=TITLE, box=box.SIMPLE_HEAD, title_justify="left", show_edge=False, pad_edge=False,
                  collapse_padding=True, padding=(0, 0) if squeeze else (0, 1))
    broken = squeeze >= 2
    table.add_column("", no_wrap=True)
    for res in results:
        table.add_column(res.phase.name, justify="right", no_wrap=True)
    columns = [res.cells(stacked=True) for res in results]
    for i, measure in enumerate(MEASURES):
        label = "seconds" if measure == "s" else BROKEN.get(measure, measure) if broken else measure
        table.add_row(Text(label, style="bold"), *(cells[i] for cells in columns))
    return table


def fits(console: Console, table: Table) -> bool:
    """Whether the table fits at its natural width: its columns are no_wrap, so anything narrower
    would make rich cut cells and headers (rich's minimum assumes they could wrap at spaces)."""
    expand, table.expand = table.expand, False  # an expanding table measures as the whole width
    try:
        return Measurement.get(console, console.options.update_width(10_000), table).maximum <= console.width
    finally:
        table.expand = expand


def summary(console: Console, results: list[PhaseResult], final: Reading, plain: bool) -> Group:
    table = by_phase_rows(results, plain)
    for squeeze in range(3):
        if plain or fits(console, table):
            break
        table = by_phase_columns(results, squeeze)
    lines: list[RenderableType] = [table]
    for res in results:
        ok, what = res.verdict()
        lines.append(Text.assemble(("PASS" if ok else "MISS", "green" if ok else "yellow"),
                                   f"  {res.phase.name:10} {what}"))
    if any(res.held for res in results):
        hold = f" ({final.recovery_hold:g} s)" if final.recovery_hold is not None else ""
        lines.append(Text(f"(hold): the phase ended while health waited out its recovery hold{hold}: a better "
                          "status must hold that long before it is reported, so it does not flap", style="dim"))
    lines.append(Text(f"final health: {final.health}"))
    if final.hunt:
        lines.append(Text(f"the hunt's top site: {final.hunt}"))
    if final.export_errors:
        lines.append(Text(f"OTLP export problems: {final.export_errors} (last: {final.last_export_error})"))
    return Group(*lines)

"""Where a run stands: counts, best per objective, elapsed time (start-up included) and throughput.

Computed from the store's records only, so it works while the run is still writing.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone

from rich.table import Table

from evomerge.report.summary import recipe_summary
from evomerge.runtime.records import RunInfo, TrialRecord, best_trial


@dataclass
class Best:
    objective: str
    direction: str
    value: float
    trial: int
    summary: str


@dataclass
class RunStatus:
    name: str
    searcher: str
    budget: int | None
    done: int
    failed: int
    running: int
    best: list[Best]
    elapsed_s: float
    per_hour: float                  # finished (done + failed) evaluations per hour
    failures: list[tuple[str, int]] = field(default_factory=list)  # most common reasons
    last_finished: datetime | None = None
    since_last_s: float | None = None  # seconds since the last result arrived
    startup_s: list[float] = field(default_factory=list)  # per session; counted in elapsed_s
    items: int = 0                     # raced runs: items scored (every stored rung)
    budget_items: int | None = None


def _aware(t: datetime) -> datetime:
    """Stored times are naive local times (Optuna's convention); make them comparable."""
    return t if t.tzinfo else t.astimezone()


def run_status(info: RunInfo, trials: list[TrialRecord], now: datetime | None = None) -> RunStatus:
    """Summarize ``trials``; elapsed runs to ``now`` while trials are in flight, else to the last finish."""
    now = _aware(now or datetime.now(timezone.utc))
    done = [t for t in trials if t.state == "complete"]
    failed = [t for t in trials if t.state == "failed"]
    running = [t for t in trials if t.state == "running"]
    best = []
    for name, direction in info.objectives.items():
        trial = best_trial(done, name, direction)
        if trial is not None:
            best.append(Best(name, direction, float(trial.objectives[name]), trial.number, recipe_summary(trial.recipe)))
    starts = [_aware(t) for t in [info.started, *(t.started for t in trials)] if t is not None]
    finishes = [_aware(t.finished) for t in done + failed if t.finished is not None]
    last = max(finishes) if finishes else None
    end = now if running or last is None else last
    elapsed = max(0.0, (end - min(starts)).total_seconds()) if starts else 0.0
    finished = len(done) + len(failed)
    per_hour = finished / elapsed * 3600 if elapsed > 0 else 0.0
    reasons = Counter((t.error or "unknown").splitlines()[0][:120] for t in failed).most_common(3)
    since = max(0.0, (now - last).total_seconds()) if last else None
    return RunStatus(info.name, info.searcher, info.budget, len(done), len(failed), len(running),
                     best, elapsed, per_hour, reasons, last, since, list(info.startup_s),
                     sum(t.rung_items for t in trials),
                     info.budget_items)


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def status_table(st: RunStatus) -> Table:
    """Two-column table: facts first, then one row per objective's best trial."""
    table = Table(title=f"run {st.name}", title_justify="left", show_header=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    budget = f" of {st.budget}" if st.budget else ""
    table.add_row("searcher", st.searcher)
    table.add_row("evaluations", f"{st.done + st.failed}{budget} finished: {st.done} done, {st.failed} failed, {st.running} running")
    if st.items or st.budget_items:
        table.add_row("items scored", f"{st.items}" + (f" of {st.budget_items}" if st.budget_items else ""))
    table.add_row("elapsed", _duration(st.elapsed_s) + (" (start-up included)" if st.startup_s else ""))
    if st.startup_s:
        each = " + ".join(f"{s:.1f}" for s in st.startup_s)
        sessions = f" over {len(st.startup_s)} sessions ({each} s)" if len(st.startup_s) > 1 else ""
        table.add_row("start-up", f"{sum(st.startup_s):.1f} s{sessions}: checks, workers, sources")
    if st.since_last_s is not None:
        table.add_row("last result", f"{_duration(st.since_last_s)} ago")
    table.add_row("throughput", f"{st.per_hour:.1f} evaluations/hour ({st.per_hour / 60:.2f}/min)")
    for b in st.best:
        arrow = "↑" if b.direction == "maximize" else "↓"
        table.add_row(f"best {b.objective} {arrow}", f"{b.value:.4g} (trial {b.trial}) {b.summary}")
    for reason, count in st.failures:
        table.add_row("failure", f"{count}× {reason}")
    return table

"""How a run shows its progress: a live bar on a terminal, and, when the output goes to a file
or a pipe (nohup, a scheduler), one status line at most every ``EVOMERGE_STATUS_EVERY`` seconds
(default 60) as results arrive: evaluations done and failed, best so far, rate, ETA.

``utilization`` is a hook for pools that can report how busy their workers are (Ray); the
in-process pool has none and the column stays empty.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import datetime
from typing import Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

STATUS_EVERY_ENV = "EVOMERGE_STATUS_EVERY"


def status_every() -> float:
    """Seconds between status lines when not on a terminal."""
    try:
        return max(0.0, float(os.environ.get(STATUS_EVERY_ENV, "60")))
    except ValueError:
        return 60.0


class RunProgress:
    def __init__(self, name: str, budget: int, done: int, directions: list[str], enabled: bool = True,
                 utilization: Callable[[], float | None] | None = None, unit: str = "evaluations") -> None:
        """``unit``: what ``budget`` and ``done`` count ("evaluations", or "items" for an item budget)."""
        self.name, self.budget, self.done, self.unit = name, budget, done, unit
        self.directions, self.utilization = directions, utilization
        self.failed = 0
        self.best: float | None = None
        console = Console(stderr=True)
        self.lines = enabled and not console.is_terminal
        self.every = status_every()
        self._start, self._start_done = time.monotonic(), done
        self._last_line = time.monotonic()
        self._bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("ETA"),
                             TimeRemainingColumn(), console=console, disable=not enabled or self.lines,
                             transient=False)
        self._task = self._bar.add_task(name, total=budget, completed=done, info="")

    def __enter__(self) -> "RunProgress":
        self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.stop()

    def seed(self, failed: int, best: float | None) -> None:
        """Counts from a resumed run's earlier evaluations."""
        self.failed, self.best = failed, best
        self._refresh(advance=0)

    def advance(self, n: int) -> None:
        """``n`` more units spent without a result (an item budget's rungs)."""
        if n:
            self.done += n
            self._refresh(advance=n)

    def result(self, first_objective: float | None, advance: int = 1) -> None:
        if first_objective is None:
            self.failed += 1
        elif self.best is None or (first_objective > self.best if self.directions[0] == "maximize"
                                   else first_objective < self.best):
            self.best = first_objective
        self.done += advance
        self._refresh(advance=advance)
        now = time.monotonic()
        if self.lines and (now - self._last_line >= self.every or self.done >= self.budget):
            self._last_line = now
            print(self.status_line(now), file=sys.stderr, flush=True)

    def status_line(self, now: float | None = None) -> str:
        """One line: time, counts, best so far, rate and ETA of this session."""
        now = time.monotonic() if now is None else now
        spent, new = now - self._start, self.done - self._start_done
        rate = new / spent * 60 if spent > 0 else 0.0
        left = max(0, self.budget - self.done)
        eta = _duration(left / rate * 60) if rate > 0 else "-"
        parts = [f"{datetime.now():%H:%M:%S} {self.name}: {self.done}/{self.budget} {self.unit}",
                 f"{self.failed} failed", "best " + ("-" if self.best is None else f"{self.best:.4g}"),
                 f"{rate:.1f}/min", f"ETA {eta}"]
        util = self.utilization() if self.utilization else None
        if util is not None:
            parts.append(f"workers {util:.0%} busy")
        return ", ".join(parts)

    def _refresh(self, advance: int) -> None:
        parts = [f"failed {self.failed}", "best " + ("-" if self.best is None else f"{self.best:.4g}")]
        util = self.utilization() if self.utilization else None
        if util is not None:
            parts.append(f"workers {util:.0%} busy")
        self._bar.update(self._task, advance=advance, info="  ".join(parts))


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"

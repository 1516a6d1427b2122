"""The live progress bar of a run: evaluations done and failed, best so far, ETA.

``utilization`` is a hook for pools that can report how busy their workers are (Ray); the
in-process pool has none and the column stays empty.
"""

from __future__ import annotations

from typing import Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class RunProgress:
    def __init__(self, name: str, budget: int, done: int, directions: list[str], enabled: bool = True,
                 utilization: Callable[[], float | None] | None = None) -> None:
        self.directions, self.utilization = directions, utilization
        self.failed = 0
        self.best: float | None = None
        self._bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("ETA"),
                             TimeRemainingColumn(), console=Console(stderr=True), disable=not enabled,
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

    def result(self, first_objective: float | None) -> None:
        if first_objective is None:
            self.failed += 1
        elif self.best is None or (first_objective > self.best if self.directions[0] == "maximize"
                                   else first_objective < self.best):
            self.best = first_objective
        self._refresh(advance=1)

    def _refresh(self, advance: int) -> None:
        parts = [f"failed {self.failed}", "best " + ("-" if self.best is None else f"{self.best:.4g}")]
        util = self.utilization() if self.utilization else None
        if util is not None:
            parts.append(f"workers {util:.0%} busy")
        self._bar.update(self._task, advance=advance, info="  ".join(parts))

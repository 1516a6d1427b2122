"""What the run store hands to readers (status, pareto, export): plain records, no Optuna types."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass
class TrialRecord:
    """One evaluated (or failed, or in-flight) candidate of a run."""

    number: int                      # candidate id, unique within the run
    state: str                       # "complete" | "failed" | "running"
    genome: list[float]              # searcher coordinates
    recipe: dict[str, Any]           # explicit recipe (see docs/ARCHITECTURE.md)
    objectives: dict[str, float]     # objective name -> value used by the searcher
    scores: dict[str, float] = field(default_factory=dict)             # task -> aggregate
    item_scores: dict[str, list[float]] = field(default_factory=dict)  # task -> per item
    timings: dict[str, float] = field(default_factory=dict)
    worker: str = ""
    error: str | None = None
    seed: int | None = None
    started: datetime | None = None
    finished: datetime | None = None
    fidelity: dict[str, Any] = field(default_factory=dict)   # raced: {"items", "of", "rungs"}
    rungs: list[dict[str, Any]] = field(default_factory=list)  # raced: each rung as stored

    @property
    def rung_items(self) -> int:
        """Items its stored rungs scored, over all tasks (0 when it was not raced)."""
        return sum(rung_items(r) for r in self.rungs)


def rung_items(rung: dict[str, Any]) -> int:
    """Items one stored rung scored, over all tasks: what an item budget counts."""
    return sum(len(v) for v in rung["item_scores"].values())


@dataclass
class RunInfo:
    """Run-level facts: what was searched, how, and toward which objectives."""

    name: str
    experiment: dict[str, Any]               # the validated experiment config as a dict
    searcher: str
    objectives: dict[str, str]               # objective name -> "maximize" | "minimize"
    budget: int | None = None                # evaluations (None: no evaluation limit)
    budget_items: int | None = None          # racing: scored items
    started: datetime | None = None          # when `evomerge run` began, start-up included
    startup_s: list[float] = field(default_factory=list)   # start-up seconds, one per session
    baselines: dict[str, Any] = field(default_factory=dict)   # the run's references (runtime/references.py) by name


def best_trial(trials: list[Any], objective: str, direction: str) -> Any | None:
    """The one rule for "the best trial": the completed trial with the best finite value of
    `objective` in its `direction`; among equal values, the earliest (lowest number)."""
    import math

    scored = [t for t in trials if t.state == "complete" and math.isfinite(float(t.objectives.get(objective, math.nan)))]
    if not scored:
        return None
    sign = 1.0 if direction == "maximize" else -1.0
    return max(scored, key=lambda t: (sign * float(t.objectives[objective]), -t.number))

"""From stored trials to the numbers a report plots: chosen objectives, their directions,
and one row per completed trial, in evaluation order."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from evomerge.errors import EvomergeError
from evomerge.report.pareto import DIRECTIONS, default_reference, front_progress, non_dominated
from evomerge.runtime.records import RunInfo, TrialRecord

_SHORT = {"max": "maximize", "min": "minimize", "maximize": "maximize", "minimize": "minimize"}


@dataclass
class Objective:
    name: str
    direction: str  # "maximize" | "minimize"


def parse_objectives(spec: str | None, info: RunInfo, trials: list[TrialRecord]) -> list[Objective]:
    """Objectives to report: the run's own by default, or ``A,B[:min|:max]``.

    A name may be one of the run's objectives (its direction is known) or a task score stored
    with each trial (maximized unless suffixed ``:min``).
    """
    if not spec:
        if not info.objectives:
            raise EvomergeError(f"run {info.name}: stores no objectives; pass --objectives")
        return [Objective(n, d) for n, d in info.objectives.items()]
    known_scores = {k for t in trials for k in t.scores}
    out: list[Objective] = []
    for part in (p.strip() for p in spec.split(",")):
        name, _, suffix = part.partition(":")
        if not name:
            raise EvomergeError(f"--objectives: empty name in {spec!r}")
        if suffix and suffix not in _SHORT:
            raise EvomergeError(f"--objectives: {part!r}: direction must be min or max")
        if name in info.objectives:
            direction = _SHORT[suffix] if suffix else info.objectives[name]
        elif name in known_scores:
            direction = _SHORT[suffix] if suffix else "maximize"
        else:
            choices = sorted(set(info.objectives) | known_scores)
            raise EvomergeError(f"--objectives: {name!r} is not an objective or task of this run (have: {', '.join(choices)})")
        if direction not in DIRECTIONS:
            raise EvomergeError(f"run {info.name}: objective {name!r} has direction {direction!r}")
        out.append(Objective(name, direction))
    return out


def _value(trial: TrialRecord, name: str) -> float | None:
    value = trial.objectives.get(name, trial.scores.get(name))
    if value is None or not math.isfinite(float(value)):
        return None
    return float(value)


@dataclass
class FrontData:
    """Completed trials with every chosen objective, in evaluation order, and their front."""

    objectives: list[Objective]
    trials: list[TrialRecord]
    values: np.ndarray                      # (n, k) in user units
    front: list[int] = field(default_factory=list)        # indices into trials, final front
    progress: list[float] = field(default_factory=list)   # hypervolume after each trial
    left_front: list[int] = field(default_factory=list)   # step each trial left the front (-1: never)
    reference: list[float] = field(default_factory=list)
    baselines: list[tuple[str, list[float]]] = field(default_factory=list)  # parents, untuned merge

    @property
    def directions(self) -> list[str]:
        return [o.direction for o in self.objectives]

    @property
    def hypervolume(self) -> float:
        return self.progress[-1] if self.progress else 0.0


def _order_key(t: TrialRecord):
    return (t.finished is None, t.finished.timestamp() if t.finished else 0.0, t.number)


def front_data(trials: list[TrialRecord], objectives: list[Objective], reference=None,
               baselines: dict | None = None) -> FrontData:
    """Collect the completed trials that have all objectives, ordered by finish time, and the
    run's baselines (label -> stored objectives and scores) that have them."""
    names = [o.name for o in objectives]
    rows, used = [], []
    for t in sorted((t for t in trials if t.state == "complete"), key=_order_key):
        vals = [_value(t, n) for n in names]
        if all(v is not None for v in vals):
            rows.append(vals)
            used.append(t)
    values = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(names))
    data = FrontData(objectives, used, values)
    for label, b in (baselines or {}).items():
        known = {**(b.get("scores") or {}), **(b.get("objectives") or {})}
        vals = [known.get(n) for n in names]
        if all(v is not None and math.isfinite(float(v)) for v in vals):
            data.baselines.append((label, [float(v) for v in vals]))
    if not used:
        return data
    directions = data.directions
    if reference is not None:
        data.reference = [float(r) for r in reference]
    else:
        data.reference = [float(r) for r in default_reference(values, directions)]
    data.front = [int(i) for i in non_dominated(values, directions)]
    data.progress, data.left_front = front_progress(values, directions, data.reference)
    return data

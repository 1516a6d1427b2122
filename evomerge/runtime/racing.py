"""Multi-fidelity evaluation: each candidate races the incumbent on growing prefixes of the split.

A candidate is scored first on items [0, first) of each task's split; while it can still beat
the best fully scored candidate so far (the incumbent), it is scored on the next items, up to
``eta`` times as many in all, and so on until the whole split (the ``limit`` if one is set).
It stops as soon as the upper confidence bound of its objective — the mean of the per-item
scores, ``z`` standard errors up — falls below the incumbent. Until a first candidate has been
scored in full every candidate goes the whole way. Per-item variances are shrunk toward 1/4,
the largest a score in [0, 1] can have, so a few identical items never look certain.

The searcher is told the mean over the items scored: an unbiased estimate of the full-split
mean when the split's items are in random order (the zoo's are), so values at different
fidelities are comparable. The store keeps every rung (items [a, b), its per-item scores) the
moment it arrives, and the final result says how many items it rests on (``fidelity``); a
resumed run continues a candidate from its last stored rung. Racing needs tasks whose score
is the mean of their item scores (generate, multiple_choice, classify), and one objective.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from evomerge.errors import ConfigError


def came_back_short(bounds: tuple[int, int], item_scores: dict[str, list[float]]) -> bool:
    """Whether a rung scored fewer items than it asked for on every task: the split ended inside it."""
    a, b = int(bounds[0]), int(bounds[1])
    return all(len(v) < b - a for v in item_scores.values())


@dataclass
class RaceState:
    """One candidate's race so far: the rungs scored and their item scores per task."""

    rungs: list[tuple[int, int]] = field(default_factory=list)
    items: dict[str, list[float]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    worker: str = ""
    exhausted: bool = False          # a rung came back short: every item of the split is scored

    def add(self, bounds: tuple[int, int], item_scores: dict[str, list[float]], timings: dict[str, float],
            worker: str) -> None:
        a, b = int(bounds[0]), int(bounds[1])
        self.rungs.append((a, b))
        for task, vals in item_scores.items():
            self.items.setdefault(task, []).extend(float(v) for v in vals)
        for k, v in timings.items():
            self.timings[k] = self.timings.get(k, 0.0) + float(v)
        self.worker = worker or self.worker
        self.exhausted = self.exhausted or came_back_short((a, b), item_scores)

    @property
    def scored(self) -> int:
        """Items scored, over all tasks."""
        return sum(len(v) for v in self.items.values())


class Race:
    """The rung schedule and the stop rule for one run (see the module docstring).

    Rung k scores items [b(k-1), b(k)) with b(0) = first, b(k+1) = ceil(eta b(k)), capped at
    ``limit``; the split's size is found, not assumed: a rung that comes back with fewer items
    than it asked for ends the race (the candidate is then scored in full), and from then on
    rungs are capped at that size too (``learn``), so no rung asks for items the split does
    not have (an item budget pays for what a rung may score)."""

    def __init__(self, first: int, eta: float, z: float, weights: dict[str, float], maximize: bool,
                 limit: int | None = None) -> None:
        if first < 1 or eta <= 1 or z <= 0:
            raise ConfigError("racing: needs first >= 1, eta > 1 and z > 0")
        self.first, self.eta, self.z, self.limit = int(first), float(eta), float(z), limit
        self.weights, self.maximize = weights, maximize
        self.size: int | None = None        # the split's size, once a short rung has shown it

    @property
    def cap(self) -> int | None:
        caps = [int(c) for c in (self.limit, self.size) if c]
        return min(caps) if caps else None

    def learn(self, bounds: tuple[int, int], item_scores: dict[str, list[float]]) -> None:
        """Note the split's size when a rung comes back short for every task."""
        if item_scores and came_back_short(bounds, item_scores):
            size = int(bounds[0]) + max(len(v) for v in item_scores.values())
            self.size = size if self.size is None else min(self.size, size)

    def bound(self, k: int) -> int:
        cap = self.cap
        b = min(self.first, cap or self.first)
        for _ in range(k):
            b = max(b + 1, math.ceil(b * self.eta))
            if cap:
                b = min(b, cap)
        return b

    def rung(self, k: int) -> tuple[int, int]:
        return (0 if k == 0 else self.bound(k - 1), self.bound(k))

    def complete(self, state: RaceState) -> bool:
        """Every item of the split (or the limit) scored."""
        if state.exhausted:
            return True
        cap = self.cap
        return bool(cap) and bool(state.rungs) and state.rungs[-1][1] >= cap

    def estimate(self, items: dict[str, list[float]]) -> tuple[float, float]:
        """(objective mean over the items scored, its standard error), in the objective's direction."""
        total_w = sum(self.weights.values())
        mean = var = 0.0
        for task, w in self.weights.items():
            xs = items.get(task) or []
            n = len(xs)
            if n == 0:
                return math.nan, math.inf
            m = sum(xs) / n
            v = sum((x - m) ** 2 for x in xs) / n
            shrunk = (n * v + 0.25) / (n + 1)
            mean += w / total_w * m
            var += (w / total_w) ** 2 * shrunk / n
        return mean, math.sqrt(var)

    def goes_on(self, state: RaceState, incumbent: float | None) -> bool:
        """Whether the candidate is scored on the next rung. ``incumbent``: the best full-split
        value so far, signed so that higher is better (None: nothing scored in full yet)."""
        if self.complete(state):
            return False
        if incumbent is None or not state.rungs:
            return True
        mean, se = self.estimate(state.items)
        signed = mean if self.maximize else -mean
        return signed + self.z * se >= incumbent


def build_race(spec: Any, tasks: list[str], objectives: list[Any], limit: int | None) -> Race:
    """The race of an experiment (``racing`` section), checked against its tasks and objectives."""
    from evomerge.evaluate.tasks import load_task

    if len(objectives) != 1:
        raise ConfigError("racing: needs exactly one objective (it races on the objective's value)")
    for ref in tasks:
        try:
            task = load_task(ref)
        except ConfigError:
            continue                 # not a task file: a custom backend's own task name
        if task.kind == "perplexity":
            raise ConfigError(f"racing: task {task.name} scores perplexity, not a mean of item scores")
    obj = objectives[0]
    return Race(spec.first, spec.eta, spec.z, dict(obj.tasks), obj.direction == "maximize", limit)

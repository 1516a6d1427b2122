"""Baselines every other searcher must beat at equal budget: uniform random and a full grid."""

from __future__ import annotations

from typing import Any

import numpy as np

from evomerge.errors import EvomergeError
from evomerge.search.base import (Candidate, Outcome, Searcher, SpaceInfo, boolean, int_at_least,
                                  option)


class _Counting(Searcher):
    """Proposes points from a fixed sequence; remembers only how far it got and what it saw."""

    def __init__(self, space: SpaceInfo, seed: int) -> None:
        super().__init__(space, seed)
        self.count = 0
        self.best: tuple[float, ...] | None = None

    def _observe(self, cand: Candidate, outcome: Outcome) -> None:
        if outcome.values is not None and (self.best is None or outcome.values[0] > self.best[0]):
            self.best = outcome.values

    def _algo_state(self) -> dict[str, Any]:
        return {"count": self.count, "best": self.best}

    def _load_algo_state(self, d: dict[str, Any]) -> None:
        self.count = int(d["count"])
        self.best = None if d["best"] is None else tuple(d["best"])


class RandomSearcher(_Counting):
    """Uniform samples in the box; first x0 and the initial population unless told otherwise."""

    name = "random"

    def __init__(self, space: SpaceInfo, options: dict[str, Any], seed: int = 0) -> None:
        super().__init__(space, seed)
        self.opts = opts = option(options, {"budget": (int_at_least(1), None),
                                            "include_start": (boolean, True)}, self.name)
        self.budget: int | None = opts["budget"]
        self.start = [space.x0, *space.initial] if opts["include_start"] else []

    @property
    def done(self) -> bool:
        return self.budget is not None and self.count >= self.budget

    def _propose(self, n: int) -> list[tuple[np.ndarray, dict[str, Any]]]:
        if self.budget is not None:
            n = min(n, self.budget - self.count)
        out = []
        for _ in range(n):
            if self.count < len(self.start):
                x = self.start[self.count]
            else:
                x = self.rng.uniform(self.space.lower, self.space.upper)
            out.append((x, {"index": self.count}))
            self.count += 1
        return out


class GridSearcher(_Counting):
    """Every point of a regular grid (``points_per_dim`` per axis, bounds included), in order.

    Given only ``budget``, it picks the densest grid with at most that many points.
    """

    name = "grid"

    def __init__(self, space: SpaceInfo, options: dict[str, Any], seed: int = 0) -> None:
        super().__init__(space, seed)
        self.opts = opts = option(options, {"points_per_dim": (int_at_least(1), None),
                                            "budget": (int_at_least(1), None),
                                "max_points": (int_at_least(1), 100_000)}, self.name)
        k = opts["points_per_dim"]
        if k is None:
            budget = opts["budget"] or 3 ** space.dim
            k = int(np.floor(budget ** (1.0 / space.dim) + 1e-9))
        if k < 2:
            raise EvomergeError(f"searcher.options.budget: too small for a grid in {space.dim} dimensions "
                                f"(needs at least {2 ** space.dim})")
        if float(k) ** space.dim > opts["max_points"]:
            raise EvomergeError(f"searcher.options.points_per_dim: {k}^{space.dim} grid points exceed "
                                f"max_points={opts['max_points']}")
        self.k = k
        self.total = k ** space.dim

    @property
    def done(self) -> bool:
        return self.count >= self.total

    def _propose(self, n: int) -> list[tuple[np.ndarray, dict[str, Any]]]:
        out = []
        lo, hi = self.space.lower, self.space.upper
        for _ in range(min(n, self.total - self.count)):
            idx = np.array(np.unravel_index(self.count, (self.k,) * self.space.dim), dtype=float)
            out.append((lo + (hi - lo) * idx / (self.k - 1), {"index": self.count}))
            self.count += 1
        return out

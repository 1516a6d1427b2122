"""MAP: quadratic surrogates of every objective over task-vector coefficients, NSGA-II on top.

The genome is c ∈ [lo, hi]^N (θ = θ_base + Σ_k c_k τ_k). Round 0 measures a design of
``initial_points`` points, at least (N+1)(N+2)/2 (the coefficients of a quadratic): x0, the
center, box vertices (a random subset when 2^N is too many), then uniform points. Every later
round fits one quadratic per objective by least squares on everything measured so far, runs
NSGA-II on the surrogates to predict a front, and asks ``per_round`` points spread along it for
real (``meta["predicted"]`` holds the surrogate's forecast). ``report()`` compares predicted
with measured; ``pareto_front()`` lists the measured non-dominated candidates.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from evomerge.errors import EvomergeError
from evomerge.search.base import Candidate, Outcome, Searcher, SpaceInfo, int_at_least, option
from evomerge.search.nsga2 import nsga2
from evomerge.search.pareto import pareto_mask


def quadratic_features(x: np.ndarray) -> np.ndarray:
    """[1, x_i, x_i·x_j (i ≤ j)] per row: (N+1)(N+2)/2 columns."""
    x = np.atleast_2d(x)
    i, j = np.triu_indices(x.shape[1])
    return np.hstack([np.ones((len(x), 1)), x, x[:, i] * x[:, j]])


def fit_quadratic(x: np.ndarray, y: np.ndarray, ridge: float = 1e-9) -> np.ndarray:
    """Least-squares coefficients (one column per objective); a tiny ridge keeps it well posed."""
    a = quadratic_features(x)
    lhs = a.T @ a + ridge * np.eye(a.shape[1])
    return np.linalg.solve(lhs, a.T @ y)


class MAPSearcher(Searcher):
    """Model-merging Adaptive Pareto search over coefficient boxes (any number of objectives)."""

    name = "map"

    def __init__(self, space: SpaceInfo, options: dict[str, Any], seed: int = 0) -> None:
        super().__init__(space, seed)
        n = space.dim
        self.n_coef = (n + 1) * (n + 2) // 2
        self.opts = option(options, {
            "initial_points": (int_at_least(1), self.n_coef + n + 1),
            "max_vertices": (int_at_least(0), 64),
            "rounds": (int_at_least(0), 3),
            "per_round": (int_at_least(1), max(4, n + 1)),
            "population": (int_at_least(4), 64),
            "generations": (int_at_least(1), 100),
        }, self.name)
        if self.opts["initial_points"] < self.n_coef:
            raise EvomergeError(f"searcher.options.initial_points: {self.opts['initial_points']} is fewer "
                                f"than the {self.n_coef} coefficients of a quadratic in {n} dimensions")
        self.round = 0
        self.plan: list[dict[str, Any]] = []       # this round's points: {"x", "predicted"}
        self.handed = 0
        self.measured: list[dict[str, Any]] = []   # {"id", "x", "values", "predicted", "round"}
        self.front_x: list[list[float]] = []       # last predicted front (coefficients)
        self.front_f: list[list[float]] = []
        self._plan_design()

    # -- planning ----------------------------------------------------------------------------
    def _plan_design(self) -> None:
        lo, hi, n = self.space.lower, self.space.upper, self.space.dim
        pts = [self.space.x0, (lo + hi) / 2, *self.space.initial]
        corners = list(itertools.islice(itertools.product([0, 1], repeat=n), 2 ** min(n, 20)))
        room = min(self.opts["max_vertices"], max(0, self.opts["initial_points"] - len(pts)))
        if len(corners) > room:       # a random subset of vertices when they would not all fit
            pick = self.rng.choice(len(corners), room, replace=False)
            corners = [corners[i] for i in sorted(pick)]
        pts += [lo + (hi - lo) * np.array(c, dtype=float) for c in corners]
        unique = list({tuple(np.round(p, 12)): p for p in pts}.values())
        while len(unique) < self.opts["initial_points"]:
            unique.append(self.rng.uniform(lo, hi))
        self.plan = [{"x": p, "predicted": None} for p in unique]

    def surrogates(self) -> np.ndarray:
        """Quadratic coefficients fitted on every successful measurement, (n_coef, n_objectives)."""
        ok = [m for m in self.measured if m["values"] is not None]
        if not ok:
            raise EvomergeError("map: every design point failed; nothing to fit")
        return fit_quadratic(np.array([m["x"] for m in ok]), np.array([m["values"] for m in ok]))

    def _plan_round(self) -> None:
        coef = self.surrogates()
        ok = [m["x"] for m in self.measured if m["values"] is not None]
        xs, fs = nsga2(lambda x: quadratic_features(x) @ coef, self.space.lower, self.space.upper,
                       self.rng, self.opts["population"], self.opts["generations"], np.array(ok))
        order = np.lexsort(fs.T[::-1])                 # along the front by the first objective
        self.front_x, self.front_f = xs[order].tolist(), fs[order].tolist()
        k = min(self.opts["per_round"], len(order))
        picks = np.unique(np.round(np.linspace(0, len(order) - 1, k)).astype(int))
        self.plan = [{"x": xs[order[i]], "predicted": fs[order[i]]} for i in picks]

    # -- Searcher hooks ----------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self.round >= self.opts["rounds"] and self.handed >= len(self.plan)

    def _propose(self, n: int) -> list[tuple[np.ndarray, dict[str, Any]]]:
        out = []
        while len(out) < n and self.handed < len(self.plan):
            p = self.plan[self.handed]
            out.append((p["x"], {"round": self.round, "predicted": p["predicted"]}))
            self.handed += 1
        return out

    def _observe(self, cand: Candidate, outcome: Outcome) -> None:
        self.measured.append({"id": cand.id, "x": cand.x, "round": cand.meta["round"],
                              "values": None if outcome.failed else list(outcome.values),
                              "predicted": cand.meta.get("predicted")})
        waiting = self.handed < len(self.plan) or any(
            c.meta.get("round") == self.round for c in self._pending.values())
        if not waiting and self.round < self.opts["rounds"]:
            self.round += 1
            self.handed = 0
            self._plan_round()

    # -- results -----------------------------------------------------------------------------
    def pareto_front(self) -> list[dict[str, Any]]:
        """Measured non-dominated candidates: id, x, values, predicted (None for design points)."""
        ok = [m for m in self.measured if m["values"] is not None]
        if not ok:
            return []
        mask = pareto_mask(np.array([m["values"] for m in ok]))
        return [dict(m, x=list(map(float, m["x"]))) for m, keep in zip(ok, mask) if keep]

    def report(self) -> dict[str, Any]:
        """Predicted vs measured on the front points: mean absolute error per objective and round."""
        rows = [m for m in self.measured if m["values"] is not None and m["predicted"] is not None]
        out: dict[str, Any] = {"evaluations": len(self.measured), "front_size": len(self.pareto_front()),
                               "mae": None, "mae_by_round": {}}
        if rows:
            err = np.abs(np.array([m["values"] for m in rows]) - np.array([m["predicted"] for m in rows]))
            out["mae"] = err.mean(axis=0).tolist()
            for r in sorted({m["round"] for m in rows}):
                sel = [k for k, m in enumerate(rows) if m["round"] == r]
                out["mae_by_round"][str(r)] = err[sel].mean(axis=0).tolist()
        return out

    def _algo_state(self) -> dict[str, Any]:
        return {"round": self.round, "handed": self.handed, "plan": self.plan, "measured": self.measured,
                "front_x": self.front_x, "front_f": self.front_f}

    def _load_algo_state(self, d: dict[str, Any]) -> None:
        self.round, self.handed = int(d["round"]), int(d["handed"])
        self.plan = [{"x": np.asarray(p["x"], float), "predicted": p["predicted"]} for p in d["plan"]]
        self.measured = [dict(m, x=np.asarray(m["x"], float)) for m in d["measured"]]
        self.front_x, self.front_f = d["front_x"], d["front_f"]

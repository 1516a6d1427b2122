"""M2N2 (natural niches): a fixed-size archive evolved by fitness sharing, attraction and crossover.

Fitness sharing per item: item j's capacity is split among the members that score on it,
z_j = Σ_k s_kj (the newcomer counted too), and member i's fitness is Σ_j s_ij / z_j^α. Parent A
is drawn with probability proportional to that fitness; parent B by attraction to A,
Σ_j max(0, s_Bj − s_Aj) / z_j^α (how much B brings where A is weak; without attraction, B is
drawn by shared fitness too, as in the paper's ablation). The child takes a random
split point k in [0, dim) along the genome's flat order and a ratio w: coordinates before k are
w·A + (1−w)·B, those after (1−w)·A + w·B (lerp, or SLERP with that per-coordinate ratio).
Optional Gaussian mutation serves from-scratch nets. Steady state: a scored child replaces the
weakest member when its shared fitness is at least as high (a tie replaces, as in the paper's
code: neutral drift; on digits it lifted test accuracy at 2000 evaluations on 4 of 5 seeds).

Two uses, one algorithm. (1) Recipe genomes for LLM merges: for linear and task-arithmetic
recipes the merged weights are linear in the per-source coefficients
(θ = θ_base + Σ_k c_k τ_k per layer group), so lerping two genomes is exactly lerping the two
merged models; for TIES/DARE (trimming, sign election) it is only an approximation. (2) Raw
weight vectors of small nets trained from scratch (``mutation_std``; the archive starts from x0
and ``SpaceInfo.initial``, e.g. the digits space's independent inits, then random points).
Measured on digits (benchmarks/results/search_digits_tuning.json): lerp beats the paper's SLERP and a full
initial archive beats the paper's two seeds growing by children, both by 0.27-0.30 test
accuracy at 10,000 evaluations; α = 1 (the paper's) beats α = 0.5 and no sharing there.
Per-item scores (``Outcome.item_scores``, all tasks concatenated, each >= 0) are required.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from evomerge.errors import EvomergeError
from evomerge.search.base import (Candidate, Outcome, Searcher, SpaceInfo, boolean, fraction,
                                  int_at_least, option, positive_float)


def _mixing(v: Any) -> str:
    if v not in ("lerp", "slerp"):
        raise ValueError(f"must be 'lerp' or 'slerp', got {v!r}")
    return str(v)


def shared_fitness(scores: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """Σ_j s_ij / z_j^α for every row i, with z_j the column sums (items nobody solves count 0)."""
    z = scores.sum(axis=0)
    share = np.where(z > 0, 1.0 / np.maximum(z, 1e-300) ** alpha, 0.0)
    return scores @ share


def attraction(scores: np.ndarray, a: int, alpha: float = 1.0) -> np.ndarray:
    """For every member B: Σ_j max(0, s_Bj − s_Aj) / z_j^α, the gain B offers where A is weak."""
    z = scores.sum(axis=0)
    gain = np.maximum(scores - scores[a], 0.0)
    return gain @ np.where(z > 0, 1.0 / np.maximum(z, 1e-300) ** alpha, 0.0)


def slerp(a: np.ndarray, b: np.ndarray, t: float | np.ndarray) -> np.ndarray:
    """Spherical interpolation from a (t=0) to b (t=1), t scalar or per coordinate.

    The angle is that between the whole vectors; lerp when they are nearly colinear.
    """
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    cos = float(np.clip(a @ b / (na * nb), -1.0, 1.0)) if na > 1e-12 and nb > 1e-12 else 1.0
    omega = np.arccos(cos)
    if np.sin(omega) < 1e-6:
        return (1 - t) * a + t * b
    return (np.sin((1 - t) * omega) * a + np.sin(t * omega) * b) / np.sin(omega)


def crossover(a: np.ndarray, b: np.ndarray, split: int, w: float, mixing: str = "lerp") -> np.ndarray:
    """Before ``split``: w·a + (1−w)·b; from ``split`` on: (1−w)·a + w·b (or the SLERP analogue)."""
    t = np.where(np.arange(a.size) < split, 1.0 - w, w)     # the share of b per coordinate
    return slerp(a, b, t) if mixing == "slerp" else (1 - t) * a + t * b


class M2N2Searcher(Searcher):
    """Steady-state M2N2 over genomes or raw weights (maximizes the shared per-item fitness)."""

    name = "m2n2"

    def __init__(self, space: SpaceInfo, options: dict[str, Any], seed: int = 0) -> None:
        super().__init__(space, seed)
        self.opts = option(options, {
            "archive_size": (int_at_least(2), 20),
            "alpha": (positive_float, 1.0),
            "mixing": (_mixing, "lerp"),
            "attraction": (boolean, True),
            "split": (boolean, True),
            "mutation_std": (float, 0.0),
            "mutation_rate": (fraction, 1.0),
            "init_std": (positive_float, None),
            "include_x0": (boolean, True),
            "max_children": (int_at_least(1), None),
        }, self.name)
        if self.opts["mutation_std"] < 0:
            raise EvomergeError("searcher.options.mutation_std: must be >= 0")
        self.archive: list[dict[str, Any]] = []   # {"id", "x", "s" (item scores), "values"}
        self.n_init = 0                            # initial members handed out
        self.n_children = 0

    # -- proposing ---------------------------------------------------------------------------
    def _initial_point(self, i: int) -> np.ndarray:
        fixed = ([self.space.x0] if self.opts["include_x0"] else []) + list(self.space.initial)
        if i < len(fixed):
            return fixed[i]
        if self.opts["init_std"] is None:
            return self.rng.uniform(self.space.lower, self.space.upper)
        return self.space.x0 + self.rng.normal(0.0, self.opts["init_std"], self.space.dim)

    def _child(self) -> tuple[np.ndarray, dict[str, Any]]:
        scores = np.array([m["s"] for m in self.archive])
        fit = shared_fitness(scores, self.opts["alpha"])
        if fit.sum() > 0:
            a = int(self.rng.choice(len(fit), p=fit / fit.sum()))
        else:
            a = int(self.rng.integers(len(fit)))
        others = np.array([i for i in range(len(fit)) if i != a])
        g = attraction(scores, a, self.opts["alpha"])[others] if self.opts["attraction"] else fit[others]
        b = int(self.rng.choice(others, p=g / g.sum())) if g.sum() > 0 else int(self.rng.choice(others))
        dim = self.space.dim
        split = int(self.rng.integers(0, dim)) if self.opts["split"] else dim
        w = float(self.rng.uniform())
        x = crossover(self.archive[a]["x"], self.archive[b]["x"], split, w, self.opts["mixing"])
        if self.opts["mutation_std"] > 0:
            mask = self.rng.uniform(size=dim) < self.opts["mutation_rate"]
            x = x + mask * self.rng.normal(0.0, self.opts["mutation_std"], dim)
        meta = {"phase": "child", "parents": [self.archive[a]["id"], self.archive[b]["id"]],
                "split": split, "w": w}
        return x, meta

    def _propose(self, n: int) -> list[tuple[np.ndarray, dict[str, Any]]]:
        out = []
        size = self.opts["archive_size"]
        while len(out) < n and self.n_init < size:
            out.append((self._initial_point(self.n_init), {"phase": "init", "index": self.n_init}))
            self.n_init += 1
        while len(out) < n and len(self.archive) >= 2 and not self.done:
            out.append(self._child())
            self.n_children += 1
        return out

    @property
    def done(self) -> bool:
        limit = self.opts["max_children"]
        return limit is not None and self.n_children >= limit

    # -- learning ----------------------------------------------------------------------------
    def _observe(self, cand: Candidate, outcome: Outcome) -> None:
        if outcome.failed:
            return
        s = outcome.item_scores
        if s is None or s.size == 0:
            raise EvomergeError("m2n2 needs per-item scores: the fitness tasks returned none (Outcome.item_scores)")
        if np.any(s < 0):
            raise EvomergeError("m2n2 needs non-negative per-item scores (e.g. accuracy per item)")
        if self.archive and s.size != self.archive[0]["s"].size:
            raise EvomergeError(f"m2n2: candidate {cand.id} has {s.size} item scores, the archive "
                                f"{self.archive[0]['s'].size}")
        member = {"id": cand.id, "x": cand.x, "s": s, "values": list(outcome.values)}
        if len(self.archive) < self.opts["archive_size"]:
            self.archive.append(member)
            return
        fit = shared_fitness(np.array([m["s"] for m in self.archive] + [s]), self.opts["alpha"])
        weakest = int(np.argmin(fit[:-1]))
        if fit[-1] >= fit[weakest]:          # a tie replaces: neutral drift, as in the paper
            self.archive[weakest] = member

    def best(self) -> dict[str, Any] | None:
        """The archive member with the highest first objective (the one to export)."""
        return max(self.archive, key=lambda m: m["values"][0], default=None)

    def _algo_state(self) -> dict[str, Any]:
        return {"n_init": self.n_init, "n_children": self.n_children,
                "archive": [{"id": m["id"], "x": m["x"], "s": m["s"], "values": m["values"]}
                            for m in self.archive]}

    def _load_algo_state(self, d: dict[str, Any]) -> None:
        self.n_init, self.n_children = int(d["n_init"]), int(d["n_children"])
        self.archive = [{"id": int(m["id"]), "x": np.asarray(m["x"], float), "s": np.asarray(m["s"], float),
                         "values": list(m["values"])} for m in d["archive"]]

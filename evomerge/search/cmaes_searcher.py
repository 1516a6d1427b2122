"""CMA-ES (the ``cmaes`` package) behind ask/tell, with bounds, IPOP restarts and exact resume.

Exact resume by replay: ``cmaes.CMA`` keeps its state private, so the saved state holds only the
facts that drove it — per restart its seed, start mean, σ0 and population size, and the values
told for each finished generation. Loading rebuilds the optimizer by re-asking and re-telling
those generations (deterministic, like Optuna rebuilding a sampler from trials); the candidates
in flight are checked against the replayed ones, so a mismatch (another cmaes/numpy version)
fails loudly instead of silently diverging.

A whole generation is sampled when its first candidate is asked and handed out on demand; the
next one starts only when every member is told, so ``ask`` returns nothing in between. The
default population is a multiple of the workers; an explicit one should be too. A failed candidate counts as the worst
value told in its generation (all failed: every member ties), so failures rank last.
The search starts at x0; an initial population (SpaceInfo.initial) is not used. IPOP restarts
begin at a uniformly random point with the population multiplied by ``inc_popsize``.

Small budgets: ``initial_design: k`` first scores a space-filling design of k points (x0, then
a scrambled Sobol sequence over the box, seeded) all at once, then starts CMA-ES at the best of
them. At 24-50 evaluations a plain start spends its first generations walking away from x0;
the design looks everywhere first. Off by default: on the zoo's task-arithmetic-per-block space,
where x0 (plain task arithmetic) is already decent, 8 Sobol points never beat x0 and the design
only cost evaluations at budgets 12 and 25; it pays when x0 is far from the optimum
(tests/test_search_cmaes.py). The defaults (population 4 + 3 ln dim, σ0 = 1/6 of the mean range)
were measured against σ0 = 1/4, populations 6 and 8, population 6 with σ0 = 1/4 and the design
on that space at 12-50 evaluations over 6 seeds: none did better on the full test split at any
of those budgets, and none lifted the worst seed (benchmarks/results/search_quality_cmaes_variants.json).
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
from cmaes import CMA

from evomerge.errors import EvomergeError
from evomerge.search.base import (Candidate, Outcome, Searcher, SpaceInfo, int_at_least, option,
                                  positive_float)


def default_population(dim: int, workers: int = 1) -> int:
    """CMA-ES's 4 + 3 ln(dim), rounded up to a multiple of the workers."""
    n = 4 + int(3 * math.log(dim))
    w = max(1, workers)
    return -(-n // w) * w


class CMAESSearcher(Searcher):
    """Single-objective CMA-ES, maximizing (the cmaes package minimizes, so values are negated)."""

    name = "cmaes"

    def __init__(self, space: SpaceInfo, options: dict[str, Any], seed: int = 0) -> None:
        super().__init__(space, seed)
        if space.n_objectives != 1:
            raise EvomergeError(f"searcher.name: cmaes optimizes one objective, the experiment has "
                                f"{space.n_objectives} (use map or m2n2, or a weighted objective)")
        if space.dim < 2:
            raise EvomergeError("searcher.name: cmaes needs at least 2 genome dimensions")
        width = space.upper - space.lower
        self.opts = opts = option(options, {
            "sigma0": (positive_float, float(np.mean(width)) / 6),
            "population_size": (int_at_least(2), default_population(space.dim, space.workers)),
            "restarts": (int_at_least(0), 0),
            "inc_popsize": (int_at_least(1), 2),
            "max_generations": (int_at_least(1), None),
            "initial_design": (int_at_least(0), 0),
        }, self.name)
        self.restart = 0
        self.design = self._design(opts["initial_design"]) if opts["initial_design"] else None
        self.segment = self._segment(space.x0, opts["population_size"])
        self.finished = False
        self.past_generations = 0
        self._build()

    # -- the replayable core -----------------------------------------------------------------
    def _segment(self, mean: np.ndarray, popsize: int) -> dict[str, Any]:
        """One (re)start: everything needed to rebuild its optimizer, plus its told history."""
        seed = int(np.random.SeedSequence([self.seed, self.restart]).generate_state(1)[0])
        return {"seed": seed, "mean": [float(v) for v in mean], "sigma": self.opts["sigma0"],
                "popsize": int(popsize), "history": [], "current": None}

    def _design(self, k: int) -> dict[str, Any]:
        """x0 and k-1 scrambled Sobol points over the box, to be scored before CMA-ES starts."""
        from scipy.stats import qmc

        m = max(0, k - 2).bit_length()          # 2**m >= k - 1 points (Sobol is balanced at powers of 2)
        unit = qmc.Sobol(self.space.dim, scramble=True, seed=self.seed).random_base2(m)[: k - 1]
        pts = [self.space.x0.tolist()]
        if k > 1:                               # k = 1: x0 alone, scored before CMA-ES starts
            pts += qmc.scale(unit, self.space.lower, self.space.upper).tolist()
        return {"points": pts, "ids": [None] * k, "values": [None] * k, "told": [False] * k}

    def _build(self) -> None:
        seg = self.segment
        bounds = np.stack([self.space.lower, self.space.upper], axis=1)
        self.cma = CMA(mean=np.asarray(seg["mean"], float), sigma=seg["sigma"], bounds=bounds,
                       seed=seg["seed"], population_size=seg["popsize"])
        self.gen_x: list[np.ndarray] | None = None
        for values in seg["history"]:
            xs = [self.cma.ask() for _ in range(seg["popsize"])]
            self._tell_cma(xs, values)
        if seg["current"] is not None:
            self.gen_x = [self.cma.ask() for _ in range(seg["popsize"])]

    def _tell_cma(self, xs: list[np.ndarray], values: list[float | None]) -> bool:
        """Tell one generation (None = failed); returns cmaes's stop verdict (always asked)."""
        ok = [v for v in values if v is not None]
        worst = min(ok) if ok else 0.0
        self.cma.tell([(x, -(worst if v is None else v)) for x, v in zip(xs, values)])
        return self.cma.should_stop()

    # -- Searcher hooks ----------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self.finished

    def _propose(self, n: int) -> list[tuple[np.ndarray, dict[str, Any]]]:
        if self.design is not None and not all(self.design["told"]):
            d = self.design
            free = [i for i, cid in enumerate(d["ids"]) if cid is None][:n]
            for k, i in enumerate(free):
                d["ids"][i] = self._next_id + k
            return [(np.asarray(d["points"][i], float), {"design": i}) for i in free]
        seg = self.segment
        if seg["current"] is None:
            self.gen_x = [self.cma.ask() for _ in range(seg["popsize"])]
            seg["current"] = {"ids": [None] * seg["popsize"], "values": [None] * seg["popsize"],
                              "told": [False] * seg["popsize"]}
        cur = seg["current"]
        free = [i for i, cid in enumerate(cur["ids"]) if cid is None][:n]
        out = []
        for k, i in enumerate(free):
            cur["ids"][i] = self._next_id + k
            out.append((self.gen_x[i], {"restart": self.restart, "generation": len(seg["history"]),
                                        "index": i}))
        return out

    def _observe(self, cand: Candidate, outcome: Outcome) -> None:
        if "design" in cand.meta:
            self._observe_design(cand, outcome)
            return
        seg, cur = self.segment, self.segment["current"]
        i = cur["ids"].index(cand.id)
        cur["told"][i] = True
        cur["values"][i] = None if outcome.failed else outcome.values[0]
        if not all(cur["told"]):
            return
        stop = self._tell_cma(self.gen_x, cur["values"])
        seg["history"].append(cur["values"])
        seg["current"], self.gen_x = None, None
        total = self.opts["max_generations"]
        if total is not None and self._generations() >= total:
            self.finished = True
        elif stop:
            if self.restart >= self.opts["restarts"]:
                self.finished = True
            else:   # IPOP: larger population, fresh random start
                self.restart += 1
                self.segment = self._segment(self.rng.uniform(self.space.lower, self.space.upper),
                                             seg["popsize"] * self.opts["inc_popsize"])
                self.past_generations += len(seg["history"])
                self._build()

    def _observe_design(self, cand: Candidate, outcome: Outcome) -> None:
        d = self.design
        i = int(cand.meta["design"])
        d["told"][i], d["values"][i] = True, None if outcome.failed else outcome.values[0]
        if all(d["told"]):                 # CMA-ES starts at the design's best point
            scored = [(v, -k) for k, v in enumerate(d["values"]) if v is not None]   # ties: the earliest, x0 first
            start = d["points"][-max(scored)[1]] if scored else self.space.x0.tolist()
            self.segment = self._segment(np.asarray(start, float), self.segment["popsize"])
            self._build()

    def _generations(self) -> int:
        return self.past_generations + len(self.segment["history"])

    def _algo_state(self) -> dict[str, Any]:
        return {"restart": self.restart, "segment": self.segment, "finished": self.finished,
                "past_generations": self.past_generations, "design": self.design}

    def _load_algo_state(self, d: dict[str, Any]) -> None:
        self.restart, self.finished = int(d["restart"]), bool(d["finished"])
        self.past_generations = int(d["past_generations"])
        self.segment = copy.deepcopy(d["segment"])
        self.design = copy.deepcopy(d.get("design"))
        self._build()
        cur = self.segment["current"]
        for cand in self._pending.values():
            if "design" in cand.meta:
                i = int(cand.meta["design"])
                if self.design is None or self.design["ids"][i] != cand.id or \
                        not np.array_equal(self.design["points"][i], cand.x):
                    raise EvomergeError("searcher state: the initial design does not match the candidates in flight")
                continue
            i = cand.meta.get("index")
            if cur is None or i is None or cur["ids"][i] != cand.id or not np.array_equal(self.gen_x[i], cand.x):
                raise EvomergeError("searcher state: CMA-ES replay does not reproduce the candidates "
                                    "in flight (saved with another cmaes/numpy version?)")

"""Search quality on the tiny zoo: anytime budget curves against the merges a user gets without search.

Target task math_words (word problems answered as number words; expert `math` answers in digits,
expert `words` in number words). One run of up to ``--budget`` evaluations per (space, arm, seed)
scores candidates on the first ``--val-items`` validation items; it is read at budgets 12, 25, 50,
100, 200 (best-so-far on validation, and that winner re-scored on the FULL test split, scores
cached by recipe). Arms: CMA-ES, random search, M2N2, hill-climbing (one random gene stepped at a
time from the start point, kept when better: the zoo's own hand search) and MAP (quadratic
surrogate; its first (N+1)(N+2)/2 points are a design). Spaces: task arithmetic per block,
TIES per block, DARE-TIES per model (seeded drops), and data-flow, hybrid and task arithmetic
per block over math + words_stack (the pair built for routing) (search_spaces/*.yaml).
Baselines on the same full test split: the parents, untuned TA / TIES / DARE-TIES, and a 5 x 5
grid of plain task-arithmetic merges (its best picked on validation, and on test: optimistic).
``--noise`` measures what the validation size costs and buys: per validation size, the
binomial standard error, the rank agreement of the 25 grid merges with their test ranking, and
the seconds per evaluation.

Finished runs are appended to ``--work``/runs.jsonl, so an interrupted benchmark resumes and two
processes (``--shard 0/2``, ``--shard 1/2``) can share the work; ``--collect`` writes the JSON.

    PYTHONPATH=. OMP_NUM_THREADS=1 nice -n 10 python benchmarks/search_quality.py --work /tmp/sq --noise --baselines
    PYTHONPATH=. OMP_NUM_THREADS=1 nice -n 10 python benchmarks/search_quality.py --work /tmp/sq --shard 0/2 &
    PYTHONPATH=. OMP_NUM_THREADS=1 nice -n 10 python benchmarks/search_quality.py --work /tmp/sq --shard 1/2
    PYTHONPATH=. python benchmarks/search_quality.py --work /tmp/sq --collect
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from _machine import machine
from evomerge.search.base import Candidate, Outcome, Searcher, SpaceInfo

ROOT = Path(__file__).resolve().parent.parent
TARGET = "math_words"
BASE, A, B = "zoo:base", "zoo:math", "zoo:words"
REFS = (BASE, A, B)
BUDGETS = (12, 25, 50, 100, 200)
GRID = (0.5, 0.75, 1.0, 1.25, 1.5)
STACK = "zoo:words_stack"
SPACES = {"ta_blocks": "ta_blocks.yaml", "ta_gradient": "ta_gradient.yaml", "ties_blocks": "ps_ties_blocks.yaml",
          "dare_ties": "ps_dare_ties.yaml", "dataflow": "dfs.yaml", "hybrid": "hybrid.yaml",
          "ta_blocks_stack": "ta_blocks.yaml"}
# Routing is measured on the pair the zoo built for it (math, then words_stack on top: docs/ZOO.md);
# its own baselines are in results/dataflow_stack.json. The other spaces merge math + words.
SOURCES = {"dataflow": (A, STACK), "hybrid": (A, STACK), "ta_blocks_stack": (A, STACK)}
# CMA-ES options as the shipped experiments set them for these spaces (experiments/evo_dfs.yaml, evo_hybrid.yaml)
CMAES_OPTIONS = {"dataflow": {"sigma0": 0.5}, "hybrid": {"sigma0": 0.5}}
ARMS = {"cmaes": ("cmaes", {}), "random": ("random", {}), "m2n2": ("m2n2", {}), "hillclimb": (None, {}),
        "map": ("map", {}),
        # CMA-ES variants measured against the default at small budgets (--arms cmaes cmaes_...)
        "cmaes_design": ("cmaes", {"initial_design": 8}), "cmaes_sigma0.5": ("cmaes", {"sigma0": 0.5}),
        "cmaes_pop6_sigma0.5": ("cmaes", {"population_size": 6, "sigma0": 0.5}),
        "cmaes_pop6": ("cmaes", {"population_size": 6}), "cmaes_pop8": ("cmaes", {"population_size": 8})}
MAIN_ARMS = ["cmaes", "random", "m2n2", "hillclimb", "map"]
PER_BLOCK = ("ta_blocks", "ties_blocks")


class HillClimb(Searcher):
    """Hill-climbing: step one random gene by ±1/8 or ±1/4 of its range from the best point so far."""

    name = "hillclimb"

    def __init__(self, space: SpaceInfo, options: dict[str, Any], seed: int = 0) -> None:
        super().__init__(space, seed)
        self.best: tuple[float, np.ndarray] | None = None

    @property
    def done(self) -> bool:
        return False

    def _propose(self, n: int) -> list[tuple[np.ndarray, dict[str, Any]]]:
        if self._pending:                       # one step at a time
            return []
        if self.best is None:
            return [(self.space.x0, {"start": True})]
        x = self.best[1].copy()
        g = int(self.rng.integers(self.space.dim))
        x[g] += self.rng.choice([-0.25, -0.125, 0.125, 0.25]) * (self.space.upper[g] - self.space.lower[g])
        return [(x, {"gene": g})]

    def _observe(self, cand: Candidate, outcome: Outcome) -> None:
        if outcome.values is not None and (self.best is None or outcome.values[0] > self.best[0]):
            self.best = (outcome.values[0], cand.x.copy())

    def _algo_state(self) -> dict[str, Any]:
        return {"best": None if self.best is None else [self.best[0], self.best[1].tolist()]}

    def _load_algo_state(self, d: dict[str, Any]) -> None:
        self.best = None if d["best"] is None else (float(d["best"][0]), np.asarray(d["best"][1], float))


def ta(wa: float, wb: float) -> dict[str, Any]:
    """Plain task arithmetic with one weight per expert."""
    return {"kind": "parameter", "method": "task_arithmetic", "base": BASE, "parameters": {"lambda": 1.0},
            "sources": [{"model": A, "parameters": {"weight": wa}}, {"model": B, "parameters": {"weight": wb}}]}


def untuned(method: str, seed: int = 0) -> dict[str, Any]:
    return {"kind": "parameter", "method": method, "base": BASE, "seed": seed,
            "sources": [{"model": m, "parameters": {"weight": 1.0, "density": 0.5}} for m in (A, B)]}


def parent(ref: str) -> dict[str, Any]:
    return {"kind": "parameter", "method": "linear", "sources": [{"model": ref, "parameters": {"weight": 1.0}}]}


class Scorer:
    """One resident evaluator on a split; ``items`` = (a, b) scores a slice. Test scores cached by recipe."""

    def __init__(self, split: str, tasks: tuple[str, ...] = (TARGET,), cache: Path | None = None,
                 limit: int | None = None) -> None:
        from evomerge.evaluate.evaluator import Evaluator
        from evomerge.runtime.pool import EvaluatorSpec

        sources = (BASE, A, B, STACK, "zoo:reverse", "zoo:count")
        self.ev = Evaluator(EvaluatorSpec(sources, tasks, split=split, backend="hf",
                                          options={"batch_size": 512, "limit": limit}))
        self.cache_path, self.cache = cache, {}
        if cache and cache.exists():
            for line in cache.read_text().splitlines():
                row = json.loads(line)
                self.cache[row["key"]] = row["scores"]

    def result(self, recipe: dict[str, Any], items: tuple[int, int] | None = None):
        from evomerge.runtime.pool import EvalJob

        r = self.ev.evaluate(EvalJob(0, recipe, items=items))
        if r.error:
            raise RuntimeError(f"scoring failed: {r.error}")
        return r

    def __call__(self, recipe: dict[str, Any]) -> dict[str, float]:
        key = json.dumps(recipe, sort_keys=True)
        if key not in self.cache:
            self.cache[key] = self.result(recipe).scores
            if self.cache_path:
                with self.cache_path.open("a") as f:
                    f.write(json.dumps({"key": key, "scores": self.cache[key]}) + "\n")
        return self.cache[key]


# TestScorer is what other benchmarks import (real_model, demo_check): the full test split.
def TestScorer(tasks: tuple[str, ...] = (TARGET,), limit: int | None = None) -> Scorer:  # noqa: N802
    return Scorer("test", tasks, limit=limit)


def load_space(name: str):
    from evomerge.genome import Models, load_space as load

    spec = yaml.safe_load((ROOT / "search_spaces" / SPACES[name]).read_text())
    base = BASE if name != "dataflow" else None
    return load(spec, Models(sources=SOURCES.get(name, (A, B)), base=base)), spec


def make(arm: str, info: SpaceInfo, seed: int, space_name: str = "ta_blocks") -> Searcher:
    from evomerge.search import make_searcher

    searcher, options = ARMS[arm]
    if searcher == "cmaes":
        options = CMAES_OPTIONS.get(space_name, {}) | options
    return HillClimb(info, options, seed) if searcher is None else make_searcher(searcher, info, options, seed)


def run_one(space_name: str, arm: str, seed: int, budget: int, val: Scorer, val_items: int, test: Scorer,
            emit: Any) -> None:
    """One search of ``budget`` evaluations through the searcher's ask/tell contract; at every budget
    it passes, ``emit`` gets the reading so far (a cut-short benchmark keeps its shorter curves)."""
    from evomerge.runtime.pool import EvalJob

    space, _ = load_space(space_name)
    searcher = make(arm, SpaceInfo(lower=space.lower, upper=space.upper, x0=space.x0), seed, space_name)
    t0, c0 = time.perf_counter(), time.process_time()
    hist: list[tuple[float, dict, list[float]]] = []
    while len(hist) < budget and not searcher.done:
        cands = searcher.ask(1)
        if not cands:
            raise RuntimeError(f"{arm}: ask returned nothing with nothing in flight")
        c = cands[0]
        recipe = space.recipe_dict(c.x)
        r = val.ev.evaluate(EvalJob(c.id, recipe, items=(0, val_items)))
        if r.error:
            searcher.tell(c.id, Outcome.failure(r.error))
            hist.append((float("-inf"), recipe, c.x.tolist()))
        else:
            v = r.scores[TARGET]
            searcher.tell(c.id, Outcome(values=(v,), item_scores=np.asarray(r.item_scores[TARGET], float)))
            hist.append((v, recipe, [round(float(g), 4) for g in c.x]))
        if len(hist) in BUDGETS or len(hist) == budget or searcher.done:
            emit(reading(space_name, arm, seed, hist, val_items, time.perf_counter() - t0,
                         time.process_time() - c0, test) | {"searcher_done": searcher.done})


def reading(space_name: str, arm: str, seed: int, hist: list, val_items: int, wall: float, cpu: float,
            test: Scorer) -> dict[str, Any]:
    """Best-so-far on validation at every budget reached, its winner scored on the full test split."""
    row: dict[str, Any] = {"space": space_name, "arm": arm, "seed": seed, "budget": len(hist), "val_items": val_items,
                           "evaluations": len(hist), "wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "at": {}}
    for b in BUDGETS:
        if b > len(hist):
            break
        i = max(range(b), key=lambda k: (hist[k][0], -k))
        row["at"][str(b)] = {"validation_best": hist[i][0], "winner": i, "test": test(hist[i][1])[TARGET],
                             "genome": hist[i][2]}
    row["best_so_far_validation"] = [round(max(h[0] for h in hist[:k + 1]), 4) for k in range(len(hist))]
    row["load_avg"] = os.getloadavg()
    return row


def baselines(val: Scorer, val_items: int, test: Scorer) -> dict[str, Any]:
    """Parents, untuned merges and the 5 x 5 plain task-arithmetic grid, on validation items and full test."""
    out: dict[str, Any] = {"parents": {r: test(parent(r))[TARGET] for r in (A, B)},
                           "untuned": {"task_arithmetic": test(ta(1.0, 1.0))[TARGET],
                                       **{m: test(untuned(m))[TARGET] for m in ("ties", "dare_ties")}}}
    grid_val = {f"{wa},{wb}": val.result(ta(wa, wb), (0, val_items)).scores[TARGET] for wa in GRID for wb in GRID}
    grid_test = {f"{wa},{wb}": test(ta(wa, wb))[TARGET] for wa in GRID for wb in GRID}
    by_val, by_test = max(grid_val, key=grid_val.get), max(grid_test, key=grid_test.get)
    out["ta_grid"] = {"validation": grid_val, "test": grid_test}
    out["best_plain_ta_picked_on_validation"] = {"weights": by_val, "test": grid_test[by_val]}
    out["best_plain_ta"] = {"weights": by_test, "test": grid_test[by_test],
                            "note": "best of the 25 on TEST: an optimistic baseline, the one the verdicts use"}
    return out


def noise(val: Scorer, test: Scorer, sizes: tuple[int, ...]) -> dict[str, Any]:
    """What validation size buys: standard error, agreement with the test ranking, cost per evaluation."""
    from scipy.stats import kendalltau

    recipes = [ta(wa, wb) for wa in GRID for wb in GRID]
    items = [np.asarray(val.result(r).item_scores[TARGET], float) for r in recipes]
    tests = [test(r)[TARGET] for r in recipes]
    best_test = max(tests)
    out: dict[str, Any] = {"recipes": "the 25 plain task-arithmetic grid merges", "sizes": {}}
    for n in sizes:
        n = min(n, len(items[0]))
        scores = [float(s[:n].mean()) for s in items]
        t0 = time.process_time()
        for _ in range(3):
            val.result(ta(1.0, 1.0), (0, n))
        pick = int(np.argmax(scores))
        out["sizes"][str(n)] = {
            "binomial_se_mean": float(np.mean([np.sqrt(p * (1 - p) / n) for p in scores])),
            "kendall_tau_vs_test": float(kendalltau(scores, tests).statistic),
            "max_abs_diff_vs_full_validation": float(max(abs(s - float(f.mean())) for s, f in zip(scores, items))),
            "regret_of_pick_on_test": best_test - tests[pick],
            "cpu_s_per_scoring": (time.process_time() - t0) / 3}
        print(f"noise n={n}: {out['sizes'][str(n)]}", flush=True)
    return out


def plan(args) -> list[tuple[str, str, int]]:
    """Seed by seed, so a benchmark cut short still compares every arm on the seeds it finished."""
    return [(space, arm, seed) for seed in args.seeds for space in args.spaces
            for arm in (args.arms if space == "ta_blocks" else args.other_arms)]


def done_rows(work: Path) -> list[dict]:
    path = work / "runs.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def summarize(rows: list[dict], base: dict[str, Any] | None) -> tuple[dict, dict]:
    by: dict[tuple[str, str], list[dict]] = {}
    for r in sorted(rows, key=lambda r: r["seed"]):
        by.setdefault((r["space"], r["arm"]), []).append(r)
    summary: dict[str, Any] = {}
    for (space, arm), rs in by.items():
        summary.setdefault(space, {})[arm] = {
            b: {"seeds": [r["seed"] for r in rs if b in r["at"]],
                "test": [round(r["at"][b]["test"], 4) for r in rs if b in r["at"]],
                "test_mean": statistics.fmean(r["at"][b]["test"] for r in rs if b in r["at"]),
                "test_min": min(r["at"][b]["test"] for r in rs if b in r["at"]),
                "validation_mean": statistics.fmean(r["at"][b]["validation_best"] for r in rs if b in r["at"])}
            for b in map(str, BUDGETS) if any(b in r["at"] for r in rs)}
    verdict: dict[str, Any] = {}
    if base:
        plain = base["best_plain_ta"]["test"]
        for (space, arm), rs in by.items():
            if arm != "cmaes":
                continue
            rnd = {r["seed"]: r for r in by.get((space, "random"), [])}
            for b in map(str, BUDGETS):
                mine = [r for r in rs if b in r["at"]]
                if not mine:
                    continue
                v = {"seeds": len(mine), "beats_best_plain_ta_by_0.10_every_seed":
                     all(r["at"][b]["test"] >= plain + 0.10 for r in mine),
                     "margin_over_best_plain_ta": [round(r["at"][b]["test"] - plain, 4) for r in mine]}
                pairs = [(r, rnd[r["seed"]]) for r in mine if r["seed"] in rnd and b in rnd[r["seed"]]["at"]]
                if pairs:
                    v["beats_random_every_seed"] = all(r["at"][b]["test"] > q["at"][b]["test"] for r, q in pairs)
                    v["margin_over_random"] = [round(r["at"][b]["test"] - q["at"][b]["test"], 4) for r, q in pairs]
                verdict.setdefault(space, {})[b] = v
    return summary, verdict


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True, help="folder for runs.jsonl, baselines, the test cache")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "search_quality.json")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--spaces", nargs="+", default=list(SPACES), choices=list(SPACES))
    ap.add_argument("--arms", nargs="+", default=MAIN_ARMS, choices=list(ARMS), help="arms in ta_blocks")
    ap.add_argument("--other-arms", nargs="+", default=["cmaes", "random"], choices=list(ARMS),
                    help="arms in the other spaces")
    ap.add_argument("--budget", type=int, default=200)
    ap.add_argument("--val-items", type=int, default=300, help="validation items per evaluation (see --noise)")
    ap.add_argument("--shard", default="0/1", help="i/n: run every n-th job from the i-th")
    ap.add_argument("--baselines", action="store_true", help="score the baselines")
    ap.add_argument("--noise", action="store_true", help="measure noise vs cost of validation sizes")
    ap.add_argument("--collect", action="store_true", help="write --out from the work folder and exit")
    ap.add_argument("--note", default=None, help="with --collect: a line stored in the JSON")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.collect:
        collect(args)
        return
    import torch

    torch.set_num_threads(1)
    test = Scorer("test", cache=args.work / "test_cache.jsonl")
    val = Scorer("validation")
    if args.noise:
        (args.work / "noise.json").write_text(json.dumps(noise(val, test, (100, 200, 300, 500, 1007)), indent=2))
    if args.baselines:
        base = baselines(val, args.val_items, test)
        (args.work / "baselines.json").write_text(json.dumps(base, indent=2))
        print("baselines:", json.dumps({k: v for k, v in base.items() if k != "ta_grid"}), flush=True)
    i, n = map(int, args.shard.split("/"))
    have = {(r["space"], r["arm"], r["seed"]) for r in done_rows(args.work) 
            if r["budget"] >= args.budget or r.get("searcher_done")}
    for k, (space, arm, seed) in enumerate(plan(args)):
        if k % n != i or (space, arm, seed) in have:
            continue
        def emit(row: dict[str, Any]) -> None:
            with (args.work / "runs.jsonl").open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(f"{space} {arm} seed {seed} @{row['budget']}: "
                  + ", ".join(f"@{b} val {v['validation_best']:.3f} test {v['test']:.3f}" for b, v in row["at"].items())
                  + f" ({row['wall_s']:.0f} s wall, {row['cpu_s']:.0f} s cpu)", flush=True)

        run_one(space, arm, seed, args.budget, val, args.val_items, test, emit)


def collect(args) -> None:
    rows = done_rows(args.work)
    latest: dict[tuple, dict] = {}
    for r in rows:                                       # the longest run per (space, arm, seed)
        k = (r["space"], r["arm"], r["seed"])
        if k not in latest or r["budget"] >= latest[k]["budget"]:
            latest[k] = r
    rows = list(latest.values())
    read = lambda name: json.loads((args.work / name).read_text()) if (args.work / name).exists() else None  # noqa: E731
    base = read("baselines.json")
    summary, verdict = summarize(rows, base)
    out = {"benchmark": "search_quality", "note": args.note, "target": TARGET, "budgets": list(BUDGETS),
           "spaces": {s: yaml.safe_load((ROOT / "search_spaces" / f).read_text()) for s, f in SPACES.items()},
           "arms": {a: {"searcher": s or "hillclimb (benchmarks/search_quality.py)", "options": o}
                    for a, (s, o) in ARMS.items() if any(r["arm"] == a for r in rows)},
           "val_items": sorted({r["val_items"] for r in rows}),
           "machine": machine("torch", "transformers", "cmaes") | {   # taken when collecting; runs use 1 thread
               "torch_threads": 1, "load_avg_per_run": [round(r["load_avg"][0], 1) for r in rows if "load_avg" in r]},
           "noise": read("noise.json"), "baselines": base,
           "summary": summary, "verdict": verdict,
           "runs": sorted(rows, key=lambda r: (r["space"], r["arm"], r["seed"]))}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(verdict, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

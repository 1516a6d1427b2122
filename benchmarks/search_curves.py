"""Anytime budget curves on the tiny zoo: best-so-far on validation and the winner's score on
the FULL test split at budgets 12, 25, 50, per seed, for CMA-ES (today's start and with a
space-filling initial design) and random search, in the task-arithmetic-per-block space
(search_spaces/ta_blocks.yaml, 12 genes), target math_words. Baselines on the same full test
split: the parents, untuned task arithmetic / TIES / DARE-TIES, and the best of a 5 x 5 grid of
plain task-arithmetic merges (w_math, w_words in 0.5..1.5; the best on TEST, an optimistic
baseline). Searches score on the first ``--val-limit`` validation items (a measured choice:
``--noise`` reports the spread of the same recipe's score over disjoint validation subsets).

    PYTHONPATH=. OMP_NUM_THREADS=1 nice python benchmarks/search_curves.py --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from _machine import machine  # noqa: E402
from search_quality import A, B, BASE, TARGET, TestScorer, parent, untuned  # noqa: E402

SPACE = yaml.safe_load((ROOT / "search_spaces" / "ta_blocks.yaml").read_text())
GRID = (0.5, 0.75, 1.0, 1.25, 1.5)
BUDGETS = (12, 25, 50)
ARMS = {  # name -> (searcher, options)
    "cmaes": ("cmaes", {}),
    "cmaes_design": ("cmaes", {"initial_design": 8}),
    "random": ("random", {}),
}


def ta(wa: float, wb: float) -> dict[str, Any]:
    return {"kind": "parameter", "method": "task_arithmetic", "base": BASE, "parameters": {"lambda": 1.0},
            "sources": [{"model": A, "parameters": {"weight": wa}}, {"model": B, "parameters": {"weight": wb}}]}


def run_search(arm: str, seed: int, budget: int, val_limit: int | None, workdir: Path) -> tuple[list, float]:
    from evomerge.experiment import Experiment
    from evomerge.runtime.inprocess import InProcessPool
    from evomerge.runtime.loop import run_loop
    from evomerge.runtime.session import build_session
    from evomerge.runtime.store import RunStore, sqlite_url

    searcher, options = ARMS[arm]
    fitness: dict[str, Any] = {"tasks": [TARGET], "split": "validation", "options": {"batch_size": 512}}
    if val_limit:
        fitness["options"]["limit"] = val_limit
    exp = Experiment.model_validate({"name": f"{arm}-{seed}", "models": {"base": BASE, "sources": [A, B]},
                                     "search_space": SPACE, "fitness": fitness,
                                     "searcher": {"name": searcher, "options": options},
                                     "budget": budget, "seed": seed, "backend": "hf"})
    session = build_session(exp)
    store = RunStore.create(sqlite_url(workdir / f"{arm}-{seed}.db"), exp.name, exp.model_dump(mode="json"),
                            searcher, exp.objective_directions(), budget)
    pool = InProcessPool(session.spec)
    t0 = time.perf_counter()
    run_loop(store, session, pool, budget, show_progress=False)
    pool.close()
    trials = sorted((t for t in store.trials() if t.state == "complete"), key=lambda t: t.number)
    return trials, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "search_curves.json")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    ap.add_argument("--val-limit", type=int, default=None, help="validation items per evaluation (default: all 1007)")
    ap.add_argument("--skip-baselines", action="store_true")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    test = TestScorer((TARGET,), None)
    out: dict[str, Any] = {"benchmark": "search_curves", "target": TARGET, "space": SPACE,
                           "machine": machine("torch", "transformers", "optuna", "cmaes"), "config": vars(args) | {"out": str(args.out)}}
    if not args.skip_baselines:
        base: dict[str, Any] = {"parents": {r: test(parent(r))[TARGET] for r in (A, B)},
                                "untuned": {m: test(untuned(m, 0) if m != "task_arithmetic" else ta(1.0, 1.0))[TARGET]
                                            for m in ("task_arithmetic", "ties", "dare_ties")}}
        grid = {f"{wa},{wb}": test(ta(wa, wb))[TARGET] for wa in GRID for wb in GRID}
        best = max(grid, key=grid.get)
        base["ta_grid_test"] = grid
        base["best_plain_ta"] = {"weights": best, "test": grid[best]}
        out["baselines"] = base
        print("baselines:", json.dumps({k: v for k, v in base.items() if k != "ta_grid_test"}), flush=True)
    runs: dict[str, list] = {arm: [] for arm in args.arms}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for arm in args.arms:
                trials, wall = run_search(arm, seed, max(BUDGETS), args.val_limit, Path(tmp))
                row: dict[str, Any] = {"seed": seed, "wall_s": round(wall, 1), "at": {}}
                for b in BUDGETS:
                    first = [t for t in trials if t.number < b]
                    win = max(first, key=lambda t: (t.objectives["score"], -t.number))
                    row["at"][str(b)] = {"validation_best": win.objectives["score"], "winner": win.number,
                                         "test": test(win.recipe)[TARGET]}
                row["best_so_far_validation"] = [max(t.objectives["score"] for t in trials[:k + 1])
                                                 for k in range(len(trials))]
                runs[arm].append(row)
                print(f"{arm} seed {seed}: " + ", ".join(f"@{b} val {row['at'][str(b)]['validation_best']:.3f} "
                                                         f"test {row['at'][str(b)]['test']:.3f}" for b in BUDGETS)
                      + f" ({wall:.0f} s)", flush=True)
    out["runs"] = runs
    out["summary"] = {arm: {str(b): {"test_mean": statistics.fmean(r["at"][str(b)]["test"] for r in rows),
                                     "test_min": min(r["at"][str(b)]["test"] for r in rows),
                                     "validation_mean": statistics.fmean(r["at"][str(b)]["validation_best"] for r in rows)}
                            for b in BUDGETS} for arm, rows in runs.items()}
    if "baselines" in out:
        plain = out["baselines"]["best_plain_ta"]["test"]
        out["verdict"] = {arm: {str(b): {"beats_best_plain_ta_by_0.10_every_seed":
                                         all(r["at"][str(b)]["test"] >= plain + 0.10 for r in rows)}
                                for b in BUDGETS} for arm, rows in runs.items()}
        if "random" in runs:
            for arm in runs:
                if arm != "random":
                    for b in BUDGETS:
                        out["verdict"][arm][str(b)]["beats_random_every_seed"] = all(
                            r["at"][str(b)]["test"] > q["at"][str(b)]["test"] for r, q in zip(runs[arm], runs["random"]))
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    out["machine"]["load_avg_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out["summary"], indent=2))
    print(json.dumps(out.get("verdict"), indent=2))


if __name__ == "__main__":
    main()

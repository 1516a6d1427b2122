"""Multi-fidelity racing vs single-fidelity evaluation at an equal budget of scored items.

Problem: evomerge/runtime/simulated.py's noisy sphere: a candidate's item j scores 1 with probability
f(x) = exp(-|x - 0.7|^2 / 0.5), drawn per (x, j), so the true value f of every candidate is known
and the noise is binomial per item (what a 0/1-scored task such as math_words gives). Both arms run
the real loop and SQLite store with CMA-ES; single fidelity scores every candidate on all N items,
racing (evomerge/runtime/racing.py) scores 32, 64, 128, ... items while a candidate's upper bound
can still beat the incumbent. For each seed the curve is the TRUE f of the incumbent (the best
fully scored candidate, what export picks) against the items scored so far. Also the driver's
CPU per stored evaluation (store writes dominate it).

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/racing.py --out benchmarks/results/racing.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from _machine import machine

ROOT = Path(__file__).resolve().parent.parent


def run_arm(racing: dict | None, budget: int, items: int, seed: int, dim_space: dict, workdir: Path) -> dict:
    from evomerge.experiment import Experiment
    from evomerge.runtime.inprocess import InProcessPool
    from evomerge.runtime.loop import run_loop
    from evomerge.runtime.session import build_session
    from evomerge.runtime.simulated import NoisySimulatedEvaluator, recipe_numbers
    from evomerge.runtime.store import RunStore, sqlite_url

    name = f"{'race' if racing else 'single'}-{seed}"
    data = {"name": name, "models": {"base": "zoo:base", "sources": ["zoo:a", "zoo:b"]}, "search_space": dim_space,
            "fitness": {"tasks": ["sphere"], "options": {"items": items}},
            "searcher": {"name": "cmaes", "options": {}}, "budget": budget, "seed": seed,
            "backend": "evomerge.runtime.simulated:NoisySimulatedEvaluator"}
    if racing:
        data["racing"] = racing
    exp = Experiment.model_validate(data)
    session = build_session(exp)
    store = RunStore.create(sqlite_url(workdir / f"{name}.db"), name, exp.model_dump(mode="json"), "cmaes",
                            exp.objective_directions(), budget)
    pool = InProcessPool(session.spec)
    c0 = time.process_time()
    run_loop(store, session, pool, budget, show_progress=False)
    cpu = time.process_time() - c0
    trials = sorted(store.trials(), key=lambda t: t.finished)
    curve, scored, best = [], 0, None          # (items scored so far, true f of the incumbent)
    for t in trials:
        scored += len(t.item_scores.get("sphere", []))
        full = not t.fidelity or t.fidelity.get("full", True)
        if t.state == "complete" and full and (best is None or t.objectives["score"] > best[0]):
            best = (t.objectives["score"], NoisySimulatedEvaluator.truth(recipe_numbers(t.recipe)))
        curve.append((scored, None if best is None else best[1]))
    return {"curve": curve, "evaluations": len(trials), "driver_cpu_per_eval_ms": 1e3 * cpu / len(trials)}


def at(curve: list, items: int) -> float | None:
    """True value of the incumbent after at most ``items`` scored items."""
    val = None
    for scored, f in curve:
        if scored > items:
            break
        val = f
    return val


def items_to_reach(curve: list, target: float) -> int | None:
    return next((scored for scored, f in curve if f is not None and f >= target), None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "racing.json")
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    ap.add_argument("--items", type=int, default=512, help="items in the split")
    ap.add_argument("--single-budget", type=int, default=60, help="single-fidelity evaluations")
    ap.add_argument("--first", type=int, default=32)
    ap.add_argument("--eta", type=float, default=2.0)
    ap.add_argument("--z", type=float, default=2.0)
    args = ap.parse_args()
    space = {"kind": "parameter", "method": "dare_ties", "weight": {"low": 0.0, "high": 2.0, "init": 1.5},
             "density": {"low": 0.1, "high": 1.0, "init": 0.2}}
    budget_items = args.single_budget * args.items
    checkpoints = [budget_items // 8, budget_items // 4, budget_items // 2, budget_items]
    t0 = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            single = run_arm(None, args.single_budget, args.items, seed, space, Path(tmp))
            race = run_arm({"first": args.first, "eta": args.eta, "z": args.z}, args.single_budget * 8,
                           args.items, seed, space, Path(tmp))
            target = at(single["curve"], budget_items)
            row = {"seed": seed,
                   "single": {c: at(single["curve"], c) for c in checkpoints},
                   "racing": {c: at(race["curve"], c) for c in checkpoints},
                   "target_single_final": target,
                   "items_to_target": {"single": items_to_reach(single["curve"], target),
                                       "racing": items_to_reach(race["curve"], target)},
                   "racing_evaluations_within_budget": sum(1 for s, _ in race["curve"] if s <= budget_items),
                   "driver_cpu_per_eval_ms": {"single": single["driver_cpu_per_eval_ms"],
                                              "racing": race["driver_cpu_per_eval_ms"]}}
            rows.append(row)
            print(f"seed {seed}: true f at {budget_items} items: single {row['single'][budget_items]:.4f} "
                  f"racing {row['racing'][budget_items]:.4f}; items to single's final: "
                  f"{row['items_to_target']}", flush=True)
    final = [(r["racing"][budget_items], r["single"][budget_items]) for r in rows]
    reach = [r["items_to_target"] for r in rows]
    summary = {
        "seeds": len(rows),
        "racing_at_least_as_good_at_equal_items": sum(a >= b for a, b in final),
        "mean_true_f": {"single": statistics.fmean(b for _, b in final), "racing": statistics.fmean(a for a, _ in final)},
        "curve_mean_true_f": {arm: {str(c): statistics.fmean(r[arm][c] for r in rows if r[arm][c] is not None)
                                    for c in checkpoints} for arm in ("single", "racing")},
        "racing_reached_single_final_with_fewer_items": sum(1 for r in reach if r["racing"] is not None
                                                           and r["racing"] < r["single"]),
        "median_items_to_single_final": {
            "single": statistics.median(r["single"] for r in reach),
            "racing": statistics.median(r["racing"] if r["racing"] is not None else float("inf") for r in reach)},
        "driver_cpu_per_eval_ms": {arm: statistics.fmean(r["driver_cpu_per_eval_ms"][arm] for r in rows)
                                   for arm in ("single", "racing")},
    }
    result = {"benchmark": "racing", "problem": "noisy sphere (binomial items), 4 genes, CMA-ES default population",
              "machine": machine("optuna", "cmaes"),
              "config": vars(args) | {"out": str(args.out), "budget_items": budget_items},
              "summary": summary, "runs": rows, "wall_s": round(time.perf_counter() - t0, 1)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()

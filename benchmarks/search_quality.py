"""Search quality on the tiny zoo: do evolved recipes beat what a user gets without search?

Target task math_words (word problems answered as number words; expert `math` answers in digits,
expert `words` in number words). For several seeds and the same evaluation budget per method,
each search scores candidates on the validation split and its winner is re-scored on the
held-out test split. Compared: every parent, untuned TIES and DARE-TIES (weight 1, density 0.5),
random search, CMA-ES over the parameter space (DARE-TIES, weight and density per expert), and
CMA-ES over the hybrid space (that merge, then data-flow routing). Then MAP's front against a grid
at equal real evaluations on the two experts' own tasks (math, words: a trade-off, since each
expert forgets the other's skill): hypervolume of the validation front and of the same front
re-measured on test. Writes JSON with mean and spread per method.

    EVOMERGE_ZOO=DIR nice -n 10 python benchmarks/search_quality.py --out benchmarks/results/search_quality.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from _machine import machine

ROOT = Path(__file__).resolve().parent.parent
TARGET = "math_words"
BASE, A, B = "zoo:base", "zoo:math", "zoo:words"
PS_SPACE = {"kind": "parameter", "method": "dare_ties", "weight": {"low": 0.0, "high": 2.0, "init": 1.0},
            "density": {"low": 0.1, "high": 1.0, "init": 0.5}}
BLOCKS_SPACE = {"kind": "parameter", "method": "dare_ties", "groups": "blocks",
                "weight": {"low": 0.0, "high": 3.0, "init": 1.0}, "density": {"low": 0.2, "high": 1.0, "init": 0.5}}
HYBRID_SPACE = {"kind": "hybrid", "parameter": PS_SPACE, "dataflow": {"repetitions": 1}}
METHODS = {  # name -> (search space, searcher, options); random_X is the baseline for X
    "random_ps": (PS_SPACE, "random", {}),
    "cmaes_ps": (PS_SPACE, "cmaes", {"population_size": 6, "sigma0": 0.3}),
    "random_blocks": (BLOCKS_SPACE, "random", {}),
    "cmaes_blocks": (BLOCKS_SPACE, "cmaes", {"population_size": 8, "sigma0": 0.4}),
    "random_hybrid": (HYBRID_SPACE, "random", {}),
    "cmaes_hybrid": (HYBRID_SPACE, "cmaes", {"population_size": 8, "sigma0": 0.3}),
}


def untuned(method: str, seed: int) -> dict[str, Any]:
    return {"kind": "parameter", "method": method, "base": BASE, "seed": seed,
            "sources": [{"model": m, "parameters": {"weight": 1.0, "density": 0.5}} for m in (A, B)]}


def parent(ref: str) -> dict[str, Any]:
    return {"kind": "parameter", "method": "linear", "sources": [{"model": ref, "parameters": {"weight": 1.0}}]}


class TestScorer:
    """One resident evaluator on the held-out test split, shared by every winner."""

    def __init__(self, tasks: tuple[str, ...], limit: int | None) -> None:
        from evomerge.evaluate.evaluator import Evaluator
        from evomerge.runtime.pool import EvaluatorSpec

        sources = (BASE, A, B, "zoo:reverse", "zoo:count")
        self.ev = Evaluator(EvaluatorSpec(sources, tasks, split="test", backend="hf", options={"limit": limit}))
        self.n = 0

    def __call__(self, recipe: dict[str, Any]) -> dict[str, float]:
        from evomerge.runtime.pool import EvalJob

        r = self.ev.evaluate(EvalJob(self.n, recipe))
        self.n += 1
        if r.error:
            raise RuntimeError(f"test scoring failed: {r.error}")
        return r.scores


def search(name: str, space: dict, searcher: str, options: dict, tasks: list[str], objectives: list[dict] | None,
           sources: list[str], budget: int, seed: int, limit: int, workdir: Path):
    """One run through the real loop and store; returns its trials and wall time."""
    from evomerge.experiment import Experiment
    from evomerge.runtime.inprocess import InProcessPool
    from evomerge.runtime.loop import run_loop
    from evomerge.runtime.session import build_session
    from evomerge.runtime.store import RunStore, sqlite_url

    fitness: dict[str, Any] = {"tasks": tasks, "split": "validation", "options": {"limit": limit, "batch_size": 256}}
    if objectives:
        fitness["objectives"] = objectives
    exp = Experiment.model_validate({"name": name, "models": {"base": BASE, "sources": sources},
                                     "search_space": space, "fitness": fitness,
                                     "searcher": {"name": searcher, "options": options},
                                     "budget": budget, "seed": seed, "backend": "hf"})
    session = build_session(exp)
    store = RunStore.create(sqlite_url(workdir / f"{name}.db"), name, exp.model_dump(mode="json"), searcher,
                            exp.objective_directions(), budget)
    pool = InProcessPool(session.spec)
    t0 = time.perf_counter()
    run_loop(store, session, pool, budget, show_progress=False)
    pool.close()
    return [t for t in store.trials() if t.state == "complete"], time.perf_counter() - t0


def summary(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.pstdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values)}


def target_benchmark(args, test: TestScorer, workdir: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"parents": {}, "untuned": {}, "searched": {}}
    for ref in (BASE, A, B):
        out["parents"][ref] = test(parent(ref))[TARGET]
    for method in ("ties", "dare_ties"):
        scores = [test(untuned(method, s))[TARGET] for s in args.seeds]
        out["untuned"][method] = {"test": scores, **summary(scores)}
    for name in args.methods:
        space, searcher, options = METHODS[name]
        rows = []
        for seed in args.seeds:
            trials, wall = search(f"{name}-{seed}", space, searcher, options, [TARGET], None, [A, B],
                                  args.budget, seed, args.val_limit, workdir)
            best = max(trials, key=lambda t: t.objectives["score"])
            rows.append({"seed": seed, "evaluations": len(trials), "validation_best": best.objectives["score"],
                         "test": test(best.recipe)[TARGET], "wall_s": round(wall, 1), "recipe": best.recipe})
            print(f"  {name} seed {seed}: val {rows[-1]['validation_best']:.3f} test {rows[-1]['test']:.3f} "
                  f"({wall:.0f} s)", flush=True)
        out["searched"][name] = {"runs": rows, **summary([r["test"] for r in rows])}
    best_parent = max(out["parents"].values())
    best_untuned = max(v["mean"] for v in out["untuned"].values())
    searched = out["searched"]
    out["verdict"] = {name: {"beats_best_parent": v["mean"] > best_parent, "beats_untuned": v["mean"] > best_untuned,
                             "beats_random_same_space": (v["mean"] > searched[_baseline(name)]["mean"]
                                                         if _baseline(name) in searched else None)}
                      for name, v in searched.items() if not name.startswith("random")}
    return out


def _baseline(name: str) -> str:
    """Random search over the same space."""
    return "random_" + name.split("_", 1)[1]


def map_benchmark(args, workdir: Path) -> dict[str, Any]:
    from evomerge.report.pareto import hypervolume, non_dominated

    tasks = ["math", "words"]
    objectives = [{"name": t, "tasks": [t]} for t in tasks]
    space = {"kind": "task_vector", "coefficient": {"low": 0.0, "high": 1.5, "init": 0.5}}
    test = TestScorer(tuple(tasks), args.map_test_limit)
    directions = ["maximize", "maximize"]
    out: dict[str, Any] = {}
    for name, searcher, options in (("map", "map", {"rounds": 3}), ("grid", "grid", {"budget": args.map_budget})):
        rows = []
        for seed in args.seeds:
            trials, wall = search(f"{name}-mt-{seed}", space, searcher, options, tasks, objectives,
                                  [A, B], args.map_budget, seed, args.val_limit, workdir)
            val = [[t.objectives[k] for k in tasks] for t in trials]
            front = [trials[i] for i in non_dominated(val, directions)]
            test_pts = [[test(t.recipe)[k] for k in tasks] for t in front] if front else []
            rows.append({"seed": seed, "evaluations": len(trials), "front_size": len(front),
                         "hv_validation": hypervolume(val, directions, reference=[0.0, 0.0]),
                         "hv_test_of_front": hypervolume(test_pts, directions, reference=[0.0, 0.0]) if test_pts else 0.0,
                         "wall_s": round(wall, 1)})
            print(f"  {name} seed {seed}: hv val {rows[-1]['hv_validation']:.4f} test {rows[-1]['hv_test_of_front']:.4f}",
                  flush=True)
        out[name] = {"runs": rows, "hv_validation": summary([r["hv_validation"] for r in rows]),
                     "hv_test_of_front": summary([r["hv_test_of_front"] for r in rows])}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "search_quality.json")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--budget", type=int, default=20, help="evaluations per search (target task)")
    ap.add_argument("--map-budget", type=int, default=16, help="real evaluations for MAP and for the grid")
    ap.add_argument("--val-limit", type=int, default=200, help="validation items per task during search")
    ap.add_argument("--test-limit", type=int, default=1000, help="test items of the target task")
    ap.add_argument("--map-test-limit", type=int, default=300, help="test items per task for the fronts")
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--skip-map", action="store_true")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    zoo = os.environ.get("EVOMERGE_ZOO") or str(Path.home() / ".cache" / "evomerge" / "zoo")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        print("target task:", TARGET, flush=True)
        result: dict[str, Any] = {"benchmark": "search_quality", "zoo": zoo,
                                  "machine": machine("torch", "transformers", "optuna", "cmaes"), "config": vars(args) | {"out": str(args.out)},
                                  "target": target_benchmark(args, TestScorer((TARGET,), args.test_limit), Path(tmp))}
        if not args.skip_map:
            print("MAP vs grid on math + words", flush=True)
            result["map_vs_grid"] = map_benchmark(args, Path(tmp))
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out} ({result['wall_s']} s)")


if __name__ == "__main__":
    main()

"""Racing vs single fidelity on the zoo's demo search, over several seeds at an equal item budget.

Per seed, two `evomerge run`s of the README demo's search (CMA-ES over task-arithmetic weights
per source and block, math + words experts, math_words validation split of 1007 items; no
references): ``single`` scores every candidate on all items, ``racing`` adds
``racing: {first: 38, eta: 2, z: 2}`` (rungs of 38, 76, 152, 304, 608 and all 1007 items).
Budget: ``--items`` scored validation items per arm. The single run gets items // 1007
evaluations; the racing run gets ``budget: {items: N}`` and stops by itself when its next rung
would take it past N (a race cut there is stored as partial and never a winner).

The curve of a run is its incumbent (best candidate scored on ALL validation items: a partly
scored candidate is never a winner) against the validation items scored so far; every
incumbent is re-scored on the full math_words test split (1995 items). The summary compares
the arms at the equal budget (winner's test score per seed) and the items each needs to reach
given validation scores.

    nice -n 10 env OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/racing_zoo.py --seeds 0 1 2 3 4

Runs go under ``--work`` and are reused when complete (a killed benchmark continues); the JSON
is benchmarks/results/racing_zoo.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from _machine import machine

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

VALIDATION_ITEMS = 1007
RACING = {"first": 38, "eta": 2, "z": 2}
SPACE = {"kind": "parameter", "method": "task_arithmetic", "groups": "blocks",
         "weight": {"low": 0.0, "high": 2.0, "init": 1.0}, "parameters": {"lambda": 1.0}}
THRESHOLDS = (0.35, 0.40, 0.45, 0.50)


def experiment(name: str, seed: int, budget: int | dict[str, int], racing: bool) -> dict[str, Any]:
    exp = {"name": name, "models": {"base": "zoo:base", "sources": ["zoo:math", "zoo:words"]},
           "search_space": SPACE,
           "fitness": {"tasks": ["math_words"], "split": "validation", "options": {"batch_size": 512}},
           "searcher": {"name": "cmaes", "options": {}}, "budget": budget, "seed": seed,
           "backend": "hf", "workers": 1, "resources": {"threads": 1}}
    if racing:
        exp["racing"] = dict(RACING)
    return exp


def stored(run: Path) -> tuple[int, int]:
    """(finished evaluations, validation items scored) of a run; (0, 0) if it does not exist."""
    if not (run / "store.db").exists():
        return 0, 0
    from evomerge.runtime.store import RunStore

    trials = [t for t in RunStore.open(run).trials() if t.state != "running"]
    return len(trials), sum(len(v) for t in trials for v in t.item_scores.values())


def finished(run: Path, items: int) -> bool:
    """Whether the racing run exists with this item budget and nothing in flight."""
    if not (run / "store.db").exists():
        return False
    from evomerge.runtime.store import RunStore

    store = RunStore.open(run)
    return store.meta.get("budget_items") == items and all(t.state != "running" for t in store.trials())


def evomerge_run(exp: dict[str, Any], runs: Path, log: Path) -> None:
    """`evomerge run` (or `--resume` with a new budget) in a subprocess, output to ``log``."""
    runs.mkdir(parents=True, exist_ok=True)
    path = runs / f"{exp['name']}.yaml"
    path.write_text(yaml.safe_dump(exp, sort_keys=False))
    cmd = [sys.executable, "-m", "evomerge.cli", "run", str(path), "--runs-dir", str(runs), "--no-progress"]
    if (runs / exp["name"] / "run.json").exists():
        cmd += ["--resume", str(runs / exp["name"])]
    with log.open("a") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        subprocess.run(cmd, check=True, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})


def run_arms(seed: int, items: int, work: Path) -> dict[str, Path]:
    """The seed's two runs, made or extended as needed (finished runs under ``work`` are reused)."""
    runs, log = work / f"seed{seed}", work / f"seed{seed}.log"
    single = items // VALIDATION_ITEMS
    t0 = time.perf_counter()
    if stored(runs / "single")[0] < single:
        evomerge_run(experiment("single", seed, single, False), runs, log)
    t1 = time.perf_counter()
    if not finished(runs / "racing", items):
        evomerge_run(experiment("racing", seed, {"items": items}, True), runs, log)
    if not finished(runs / "racing", items):
        raise RuntimeError(f"seed {seed}: the racing run did not end at its item budget (see {log})")
    print(f"seed {seed}: single {t1 - t0:.0f} s, racing {time.perf_counter() - t1:.0f} s", flush=True)
    return {"single": runs / "single", "racing": runs / "racing"}


def curve(run: Path, test: Any, cache: dict[str, float]) -> dict[str, Any]:
    """Incumbents (scored on every validation item) against the validation items scored so far."""
    from evomerge.runtime.store import RunStore

    trials = sorted((t for t in RunStore.open(run).trials() if t.state != "running"), key=lambda t: t.finished)
    points, scored, best = [], 0, None
    for i, t in enumerate(trials):
        scored += t.rung_items if t.rungs else sum(len(v) for v in t.item_scores.values())
        full = not t.fidelity or t.fidelity.get("full", True)
        if t.state == "complete" and full and (best is None or t.objectives["score"] > best["validation"]):
            key = f"{run}#{t.number}"
            if key not in cache:
                cache[key] = test(t.recipe)["math_words"]
            best = {"candidate": t.number, "validation": t.objectives["score"], "test": cache[key]}
            points.append({"items": scored, "evaluations": i + 1, **best})
    partial = sum(1 for t in trials if t.fidelity and not t.fidelity.get("full", True))
    cut = sum(1 for t in trials if t.fidelity.get("cut") == "budget")
    return {"run": str(run), "evaluations": len(trials), "partial": partial, "cut_by_budget": cut, "items": scored,
            "incumbents": points}


def at(points: list[dict[str, Any]], items: int) -> dict[str, Any] | None:
    """The incumbent after ``items`` validation items were scored."""
    done = [p for p in points if p["items"] <= items]
    return done[-1] if done else None


def items_to_reach(points: list[dict[str, Any]], score: float, budget: int) -> int | None:
    hit = [p["items"] for p in points if p["validation"] >= score and p["items"] <= budget]
    return hit[0] if hit else None


def summarize(seeds: dict[int, dict[str, Any]]) -> dict[str, Any]:
    per_seed, wins, fewer, reached = {}, 0, {s: 0 for s in THRESHOLDS}, {s: 0 for s in THRESHOLDS}
    marks = None
    for seed, arms in seeds.items():
        budget = arms["equal_items"]
        marks = marks or [budget * k // 10 for k in range(1, 11)]
        s, r = at(arms["single"]["incumbents"], budget), at(arms["racing"]["incumbents"], budget)
        reach = {str(th): {"single": items_to_reach(arms["single"]["incumbents"], th, budget),
                           "racing": items_to_reach(arms["racing"]["incumbents"], th, budget)}
                 for th in THRESHOLDS}
        for th in THRESHOLDS:
            a, b = reach[str(th)]["single"], reach[str(th)]["racing"]
            if a is not None or b is not None:
                reached[th] += 1
                fewer[th] += b is not None and (a is None or b < a)
        wins += r["test"] >= s["test"]
        per_seed[str(seed)] = {"equal_items": budget, "single": s, "racing": r, "items_to_reach_validation": reach}
    n = len(seeds)
    mean_curve = []
    for m in marks or []:
        row: dict[str, Any] = {"items": m}
        for arm in ("single", "racing"):
            pts = [at(seeds[sd][arm]["incumbents"], m) for sd in seeds]
            got = [p for p in pts if p]
            row[arm] = {"seeds_with_incumbent": len(got),
                        "mean_validation": round(sum(p["validation"] for p in got) / len(got), 4) if got else None,
                        "mean_test": round(sum(p["test"] for p in got) / len(got), 4) if got else None}
        mean_curve.append(row)
    return {"seeds": n, "racing_test_at_least_single": f"{wins}/{n}",
            "racing_reaches_validation_with_fewer_items": {str(th): f"{fewer[th]}/{reached[th]} seeds where "
                                                           f"either arm reached it" for th in THRESHOLDS},
            "mean_single_test": round(sum(p["single"]["test"] for p in per_seed.values()) / n, 4),
            "mean_racing_test": round(sum(p["racing"]["test"] for p in per_seed.values()) / n, 4),
            "mean_curve": mean_curve, "per_seed": per_seed}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--items", type=int, default=30 * VALIDATION_ITEMS, help="validation items scored per arm")
    ap.add_argument("--work", type=Path, default=Path("/tmp/evomerge_racing_zoo"))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "racing_zoo.json")
    args = ap.parse_args()
    t0 = time.perf_counter()
    start = machine("torch", "transformers", "optuna", "cmaes")
    runs = {seed: run_arms(seed, args.items, args.work) for seed in args.seeds}
    import torch

    from search_quality import TestScorer

    torch.set_num_threads(1)
    test = TestScorer(("math_words",), None)
    cache_file = args.work / "test_scores.json"
    cache = json.loads(cache_file.read_text()) if cache_file.exists() else {}
    seeds = {}
    for seed, arms in runs.items():
        single, racing = curve(arms["single"], test, cache), curve(arms["racing"], test, cache)
        cache_file.write_text(json.dumps(cache))
        if racing["items"] > args.items or single["items"] > args.items:
            raise RuntimeError(f"seed {seed}: a run scored more than {args.items} items")
        seeds[seed] = {"single": single, "racing": racing, "equal_items": args.items}
    start["load_avg_end"] = os.getloadavg()
    out = {"benchmark": "racing_zoo", "machine": start,
           "wall_s": round(time.perf_counter() - t0, 1),
           "runs": f"{args.work}/seedN (reused when finished: wall_s and load are this invocation's; "
                   f"each run's startup_s and trial times are in its store)",
           "setup": {"space": SPACE, "searcher": "cmaes (defaults)", "racing": RACING, "items_per_arm": args.items,
                     "budgets": {"single": f"{args.items // VALIDATION_ITEMS} evaluations",
                                 "racing": {"items": args.items}},
                     "validation_items": VALIDATION_ITEMS, "test_items": 1995, "task": "math_words",
                     "thresholds": list(THRESHOLDS)},
           "summary": summarize(seeds), "curves": {str(k): v for k, v in seeds.items()}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    summ = out["summary"]
    for seed, row in summ["per_seed"].items():
        print(f"seed {seed} at {row['equal_items']} items: single val {row['single']['validation']:.3f} "
              f"test {row['single']['test']:.3f} | racing val {row['racing']['validation']:.3f} "
              f"test {row['racing']['test']:.3f}")
    print(f"racing test >= single: {summ['racing_test_at_least_single']}; mean test single "
          f"{summ['mean_single_test']} racing {summ['mean_racing_test']}")
    print("fewer items to reach:", summ["racing_reaches_validation_with_fewer_items"])


if __name__ == "__main__":
    main()

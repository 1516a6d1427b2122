"""M2N2 vs CMA-ES vs random initialisation on sklearn's digits, nets evolved from scratch.

Every method gets the same number of evaluations (each = one full pass over the 900 training
images with a 64-10-10 tanh MLP, 760 weights), 4 candidates in flight as in a worker pool.
The candidate with the best training accuracy is then scored once on the 597 held-out test
images. Methods:
- ``m2n2``: archive of 20 nets (Xavier inits), fitness sharing over per-image 0/1 scores,
  attraction, split-point crossover, Gaussian mutation (std 0.02, every weight);
- ``m2n2_slerp``: the same with SLERP mixing (the paper's choice);
- ``m2n2_no_split_attraction``: the same without split point and attraction (the paper's ablation);
- ``cmaes``: from one Xavier init, σ0 = 0.1, default population (4 + ⌊3 ln 760⌋ = 23); its
  full 760×760 covariance costs an eigendecomposition per generation (see ``seconds``);
- ``random_init``: the best of that many fresh Xavier initialisations.

    nice -n 10 .venv/bin/python benchmarks/search_digits.py             # 3 seeds x 2000 evaluations
    .venv/bin/python benchmarks/search_digits.py --quick                # 2 seeds x 300
    .venv/bin/python benchmarks/search_digits.py --cpu-seconds 60 --methods m2n2 cmaes \
        --out benchmarks/results/search_digits_equal_time.json          # equal compute, not evaluations

With ``--cpu-seconds`` every run stops when its process CPU time (searcher + evaluations, one
thread) reaches that many seconds, however many evaluations it has done: the comparison at equal
compute (CPU time, not wall time, so other jobs on a shared machine do not skew it).

Writes benchmarks/results/search_digits.json (or --out).
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import time
from collections import deque
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from evomerge.evaluate.digits_net import DigitsTask
from evomerge.search import Outcome, SpaceInfo, make_searcher

from _machine import machine

ROOT = Path(__file__).resolve().parents[1]
BOUND = 3.0
ARCHIVE = 20
METHODS = {
    "m2n2": ("m2n2", {"archive_size": ARCHIVE, "mutation_std": 0.02}),
    "m2n2_slerp": ("m2n2", {"archive_size": ARCHIVE, "mutation_std": 0.02, "mixing": "slerp"}),
    "m2n2_no_split_attraction": ("m2n2", {"archive_size": ARCHIVE, "mutation_std": 0.02,
                                          "split": False, "attraction": False}),
    "cmaes": ("cmaes", {"sigma0": 0.1}),
}


def search(task: DigitsTask, method: str, budget: int, seed: int, cpu_seconds: float | None = None) -> dict:
    inits = [task.init_weights(np.random.default_rng([seed, i])) for i in range(ARCHIVE)]
    if method == "random_init":
        pool = inits + [task.init_weights(np.random.default_rng([seed, i])) for i in range(ARCHIVE, budget)]
        scores = [task.accuracy(w) for w in pool]
        best = pool[int(np.argmax(scores))]
        return {"train": max(scores), "test": task.accuracy(best, "test"), "evaluations": len(pool)}
    name, options = METHODS[method]
    initial = tuple(inits[1:]) if name == "m2n2" else ()
    space = SpaceInfo(-BOUND * np.ones(task.dim), BOUND * np.ones(task.dim), x0=inits[0], initial=initial)
    searcher = make_searcher(name, space, options, seed)
    inflight: deque = deque()
    told, best = 0, (-1.0, None)
    stop_at = None if cpu_seconds is None else time.process_time() + cpu_seconds
    while told < budget and (stop_at is None or time.process_time() < stop_at):
        inflight.extend(searcher.ask(4 - len(inflight)))
        cand = inflight.popleft()
        items = task.item_scores(cand.x)
        searcher.tell(cand.id, Outcome((float(items.mean()),), items))
        told += 1
        if items.mean() > best[0]:
            best = (float(items.mean()), cand.x)
    return {"train": best[0], "test": task.accuracy(best[1], "test"), "evaluations": told}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seeds", type=int)
    ap.add_argument("--budget", type=int)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "search_digits.json")
    ap.add_argument("--cpu-seconds", type=float, help="stop each run at this much CPU time (equal compute)")
    ap.add_argument("--methods", nargs="+", choices=[*METHODS, "random_init"], default=[*METHODS, "random_init"])
    args = ap.parse_args()
    seeds = args.seeds or (2 if args.quick else 3)
    budget = args.budget or (300 if args.quick else (10 ** 9 if args.cpu_seconds else 2000))
    task = DigitsTask(hidden=10)
    results: dict = {}
    with threadpool_limits(1):
        for method in args.methods:
            if args.cpu_seconds and method == "random_init":
                continue                 # a fixed number of draws, not a time budget
            runs = []
            for seed in range(seeds):
                t0, c0 = time.perf_counter(), time.process_time()
                r = search(task, method, budget, seed, args.cpu_seconds)
                r["seconds"] = round(time.perf_counter() - t0, 2)
                r["cpu_seconds"] = round(time.process_time() - c0, 2)
                r["seed"] = seed
                runs.append(r)
                print(method, r, flush=True)
            tests = [r["test"] for r in runs]
            results[method] = {"test_mean": statistics.mean(tests),
                               "test_std": statistics.stdev(tests) if len(tests) > 1 else 0.0,
                               "train_mean": statistics.mean(r["train"] for r in runs), "runs": runs}
    out = {"benchmark": "search_digits", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
           "machine": machine("numpy", "cmaes", "scikit-learn"),
           "setup": {"net": "64-10-10 tanh MLP", "weights": task.dim, "train_items": len(task.y_train),
                     "test_items": len(task.y_test), "evaluations_per_run": budget, "seeds": seeds,
                     "cpu_seconds_per_run": args.cpu_seconds,
                     "in_flight": 4, "bound": BOUND, "archive_size": ARCHIVE},
           "results": {m: {k: v for k, v in r.items()} for m, r in results.items()}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    for m, r in results.items():
        print(f"{m:28s} test {r['test_mean']:.3f} ± {r['test_std']:.3f}   train {r['train_mean']:.3f}")


if __name__ == "__main__":
    main()

"""M2N2 vs CMA-ES on sklearn's digits, nets evolved from scratch: equal evaluations AND equal CPU.

One run per (method, seed) gives both figures: as it goes it records the best-so-far net (by
training accuracy) and that net's test accuracy, against evaluations and against CPU seconds
(``time.process_time``: searcher + evaluations, one thread; reporting the test score is not
counted). CPU time, not wall time, so the other jobs on a shared machine do not skew the
comparison; the load average is recorded.

Each evaluation = one pass over the 900 training images with a 64-10-10 tanh MLP (760
weights), 4 candidates in flight as in a worker pool. Methods:
- ``m2n2``: archive of 20 Xavier inits, fitness sharing over per-image 0/1 scores, attraction,
  split-point crossover, Gaussian mutation (std 0.02, every weight) — the tuned options of
  experiments/m2n2_digits.yaml; runs to the paper's 50,000 evaluations (or ``--m2n2-cpu``);
- ``m2n2_no_split_attraction``: the paper's ablation (no split point, no attraction);
- ``cmaes``: from one Xavier init, σ0 = 0.1, default population (4 + ⌊3 ln 760⌋ = 23); runs to
  ``--cmaes-evals``. The ``cmaes`` package samples each candidate as B·diag(D)·z, a dense
  760×760 product, and updates the full covariance per generation: its cost per evaluation is
  what equal CPU charges it (``cma_floor`` records one eigendecomposition, the part no full
  covariance CMA-ES avoids);
- ``random_init``: the best of that many fresh Xavier initialisations (equal evaluations only).

    nice -n 10 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/search_digits.py     # 5 seeds
    .venv/bin/python benchmarks/search_digits.py --quick                             # smoke test

Jobs run in ``--processes`` worker processes (2 by default, for a shared 2-core machine).
Writes benchmarks/results/search_digits.json (or --out).
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import os
import re
import statistics
import time
from collections import deque
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from evomerge.digits.net import DigitsTask
from evomerge.digits.space import WeightsSpace, WeightsSpec
from evomerge.search import Outcome, SpaceInfo, make_searcher

from _machine import machine

ROOT = Path(__file__).resolve().parents[1]
BOUND = 3.0
ARCHIVE = 20
IN_FLIGHT = 4
M2N2 = {"archive_size": ARCHIVE, "mutation_std": 0.02}
METHODS = {
    "m2n2": ("m2n2", M2N2),
    "m2n2_no_split_attraction": ("m2n2", {**M2N2, "split": False, "attraction": False}),
    "cmaes": ("cmaes", {"sigma0": 0.1}),
}
EVAL_MARKS = [250, 500, 1000, 2000, 5000, 10000, 20000, 50000]
CPU_MARKS = [1, 2, 5, 10, 20, 50, 100, 200]
CLOCK_EVERY = 250


class Trace:
    """Best-so-far (by training accuracy) against evaluations and CPU seconds."""

    def __init__(self, task: DigitsTask) -> None:
        self.task, self.best_train, self.best_test = task, -1.0, None
        self.points: list[tuple[int, float, float, float]] = []   # (evaluations, cpu, train, test) per improvement
        self.report_cpu = 0.0                                      # CPU spent on test scores (not charged)
        self.clock: list[tuple[int, float]] = []                   # (evaluations, cpu) every CLOCK_EVERY
        self.c0 = time.process_time()

    def cpu(self) -> float:
        return time.process_time() - self.c0 - self.report_cpu

    def tell(self, evaluations: int, x: np.ndarray, train: float) -> None:
        if evaluations % CLOCK_EVERY == 0:
            self.clock.append((evaluations, round(self.cpu(), 3)))
        if train > self.best_train:
            cpu = self.cpu()
            r0 = time.process_time()
            self.best_train, self.best_test = train, self.task.accuracy(x, "test")
            self.report_cpu += time.process_time() - r0
            self.points.append((evaluations, cpu, train, self.best_test))

    def at(self, evaluations: int | None = None, cpu: float | None = None) -> dict | None:
        """The best found within that many evaluations (or CPU seconds)."""
        hits = [p for p in self.points if (evaluations is None or p[0] <= evaluations) and (cpu is None or p[1] <= cpu)]
        return {"train": hits[-1][2], "test": hits[-1][3]} if hits else None


def run(task: DigitsTask, method: str, seed: int, max_evals: int, max_cpu: float,
        options: dict | None = None, initial_points: int = ARCHIVE - 1) -> dict:
    """The experiment's space (x0 and 19 more seeded Xavier inits), seeded by ``seed``;
    ``options`` replace the method's (search_digits_tuning.py)."""
    space = WeightsSpace(WeightsSpec(hidden=task.hidden, bound=BOUND, init_seed=seed, initial_points=initial_points))
    trace = Trace(task)
    told = 0
    if method == "random_init":
        inits = [space.x0, *space.initial]
        for i in range(max_evals):
            w = inits[i] if i < len(inits) else task.init_weights(np.random.default_rng([seed, i]))
            told += 1
            trace.tell(told, w, task.accuracy(w))
    else:
        name, options = METHODS[method][0], options or METHODS[method][1]
        info = SpaceInfo(space.lower, space.upper, x0=space.x0, initial=space.initial if name == "m2n2" else ())
        searcher = make_searcher(name, info, options, seed)
        inflight: deque = deque()
        while told < max_evals and trace.cpu() < max_cpu:
            inflight.extend(searcher.ask(IN_FLIGHT - len(inflight)))
            cand = inflight.popleft()
            items = task.item_scores(cand.x)
            searcher.tell(cand.id, Outcome((float(items.mean()),), items))
            told += 1
            trace.tell(told, cand.x, float(items.mean()))
    cpu = trace.cpu()
    return {"method": method, "seed": seed, "evaluations": told, "cpu_seconds": round(cpu, 2),
            "cpu_per_evaluation_ms": round(1000 * cpu / told, 3),
            "final": trace.at(), "report_cpu_seconds": round(trace.report_cpu, 2),
            "at_evaluations": {str(n): trace.at(evaluations=n) for n in EVAL_MARKS if n <= told},
            "at_cpu_seconds": {str(t): trace.at(cpu=t) for t in CPU_MARKS if t <= cpu},
            "clock": trace.clock,
            "trace": [(e, round(c, 3), round(tr, 4), round(te, 4)) for e, c, tr, te in trace.points]}


def _job(args: tuple[str, int, int, float]) -> dict:
    method, seed, max_evals, max_cpu = args
    with threadpool_limits(1):
        task = DigitsTask(hidden=10)
        t0 = time.perf_counter()
        r = run(task, method, seed, max_evals, max_cpu)
        r["wall_seconds"] = round(time.perf_counter() - t0, 2)
        r["load_after"] = [round(v, 2) for v in os.getloadavg()]
    print(json.dumps({k: r[k] for k in ("method", "seed", "evaluations", "cpu_seconds", "final")}), flush=True)
    return r


def cma_floor(dim: int) -> dict:
    """One symmetric eigendecomposition of a dim×dim covariance, one thread (CPU seconds)."""
    a = np.random.default_rng(0).normal(size=(dim, dim))
    c = a @ a.T / dim
    with threadpool_limits(1):
        t = time.process_time()
        for _ in range(3):
            np.linalg.eigh(c)
        return {"dim": dim, "eigh_cpu_seconds": round((time.process_time() - t) / 3, 4)}


def summary(runs: list[dict], key: str, marks: list) -> dict:
    out = {}
    for m in marks:
        vals = [r[key].get(str(m)) for r in runs]
        if all(v is not None for v in vals):
            tests = [v["test"] for v in vals]
            out[str(m)] = {"test_mean": round(statistics.mean(tests), 4),
                           "test_std": round(statistics.stdev(tests), 4) if len(tests) > 1 else 0.0,
                           "per_seed": [round(t, 4) for t in tests]}
    return out


def equal_evaluation_pairs(results: dict, evaluations: int) -> list[dict]:
    """Per seed: both methods' best within the same number of evaluations."""
    cma = {r["seed"]: r for r in results.get("cmaes", {}).get("runs", [])}
    return [{"seed": r["seed"], "evaluations": evaluations,
             "cmaes_test": cma[r["seed"]]["at_evaluations"][str(evaluations)]["test"],
             "m2n2_test": r["at_evaluations"][str(evaluations)]["test"]}
            for r in results.get("m2n2", {}).get("runs", [])
            if r["seed"] in cma and str(evaluations) in cma[r["seed"]]["at_evaluations"]
            and str(evaluations) in r["at_evaluations"]]


def equal_cpu_pairs(results: dict, budget_method: str = "cmaes") -> list[dict]:
    """Per seed: M2N2's best within the CPU seconds CMA-ES spent on its whole run."""
    pairs = []
    cma = {r["seed"]: r for r in results.get(budget_method, {}).get("runs", [])}
    for r in results.get("m2n2", {}).get("runs", []):
        if r["seed"] not in cma:
            continue
        c = cma[r["seed"]]
        hits = [p for p in r["trace"] if p[1] <= c["cpu_seconds"]]
        pairs.append({"seed": r["seed"], "cpu_seconds": c["cpu_seconds"], "cmaes_evaluations": c["evaluations"],
                      "cmaes_test": c["final"]["test"],
                      "m2n2_evaluations": max((e for e, t in r["clock"] if t <= c["cpu_seconds"]), default=0),
                      "m2n2_finished_before": r["cpu_seconds"] <= c["cpu_seconds"],
                      "m2n2_test": hits[-1][3] if hits else None})
    return pairs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 seeds, tiny budgets (a smoke test)")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--cmaes-seeds", type=int, help="fewer seeds for the costly CMA-ES (default: --seeds)")
    ap.add_argument("--cmaes-evals", type=int, default=2000)
    ap.add_argument("--m2n2-evals", type=int, default=50000, help="the paper's budget")
    ap.add_argument("--m2n2-cpu", type=float, default=200.0, help="CPU-second cap per M2N2 run")
    ap.add_argument("--ablation-evals", type=int, default=10000)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--methods", nargs="+", choices=[*METHODS, "random_init"], default=[*METHODS, "random_init"])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "search_digits.json")
    args = ap.parse_args()
    if args.quick:
        args.seeds, args.cmaes_evals, args.m2n2_evals, args.ablation_evals = 2, 100, 500, 300
    budgets = {"m2n2": (args.m2n2_evals, args.m2n2_cpu), "m2n2_no_split_attraction": (args.ablation_evals, 1e9),
               "cmaes": (args.cmaes_evals, 1e9), "random_init": (args.cmaes_evals, 1e9)}
    seeds = {m: range(args.cmaes_seeds or args.seeds) if m == "cmaes" else range(args.seeds) for m in args.methods}
    jobs = [(m, s, *budgets[m]) for m in args.methods for s in seeds[m]]
    jobs.sort(key=lambda j: j[0] != "cmaes")            # the long CMA-ES runs first
    load_before = [round(v, 2) for v in os.getloadavg()]
    t0 = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(args.processes) as pool:
        runs = pool.map(_job, jobs, chunksize=1)
    results: dict = {}
    for m in args.methods:
        rs = [r for r in runs if r["method"] == m]
        results[m] = {"at_evaluations": summary(rs, "at_evaluations", EVAL_MARKS),
                      "at_cpu_seconds": summary(rs, "at_cpu_seconds", CPU_MARKS),
                      "cpu_per_evaluation_ms": round(statistics.mean(r["cpu_per_evaluation_ms"] for r in rs), 3),
                      "runs": rs}
    task = DigitsTask(hidden=10)
    out = {"benchmark": "search_digits", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
           "machine": {**machine("numpy", "cmaes", "scikit-learn"), "load_avg": load_before,
                       "load_avg_end": [round(v, 2) for v in os.getloadavg()]},
           "wall_seconds": round(time.perf_counter() - t0, 1), "processes": args.processes,
           "setup": {"net": "64-10-10 tanh MLP", "weights": task.dim, "train_items": len(task.y_train),
                     "test_items": len(task.y_test), "in_flight": IN_FLIGHT, "bound": BOUND,
                     "options": {m: METHODS[m][1] for m in METHODS}, "budgets": {m: budgets[m] for m in args.methods},
                     "seeds": {m: len(seeds[m]) for m in args.methods},
                     "clock": "time.process_time of the run's process (searcher + evaluations, one BLAS thread)"},
           "cma_floor": cma_floor(task.dim),
           "equal_evaluations_per_seed": equal_evaluation_pairs(results, args.cmaes_evals),
           "equal_cpu_per_seed": equal_cpu_pairs(results),
           "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(out, indent=1)    # then each list of numbers on one line:
    args.out.write_text(re.sub(r"\[\s+([^\[\]{}]*?)\s+\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text))
    for m, r in results.items():
        ev = {k: v["test_mean"] for k, v in r["at_evaluations"].items()}
        cpu = {k: v["test_mean"] for k, v in r["at_cpu_seconds"].items()}
        print(f"{m:26s} {r['cpu_per_evaluation_ms']:8.3f} ms/eval  test at evaluations {ev}\n{'':26s} test at CPU s {cpu}")
    for p in out["equal_evaluations_per_seed"]:
        print(f"seed {p['seed']}: {p['evaluations']} evaluations: cmaes {p['cmaes_test']:.3f} m2n2 {p['m2n2_test']:.3f}")
    for p in out["equal_cpu_per_seed"]:
        print(f"seed {p['seed']}: {p['cpu_seconds']} CPU s: cmaes {p['cmaes_test']:.3f} ({p['cmaes_evaluations']} evals) "
              f"m2n2 {p['m2n2_test']} ({p['m2n2_evaluations']} evals)")


if __name__ == "__main__":
    main()

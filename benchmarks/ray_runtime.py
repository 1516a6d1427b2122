"""How well the Ray runtime keeps its workers busy, and what it costs the driver.

1. Simulated workers (``SimulatedEvaluator``: every evaluation sleeps a fixed time, so any gap
   is runtime overhead): 8 actors at 0.25 CPU each on one local Ray instance, 1 s evaluations.
   - ``pool``: the pool fed directly (capacity jobs in flight, a new one per result);
   - ``loop/random``: the real search loop with its SQLite store and a steady-state searcher;
   - ``loop/cmaes``: the same with generational CMA-ES, population 10 and 16 (a multiple of the
     workers): a generation's stragglers leave workers idle, which no scheduling can avoid; and
     CMA-ES's default population, which the session rounds up to a multiple of the workers.
   Idle fraction = 1 - (time actors spent evaluating) / (time actors were up), over the run.
   The loop cases run twice, ``rounds`` and 4x ``rounds`` evaluations per worker (``@long``):
   a session's fixed costs (restore, first store writes, the first wave of asks, the last
   straggler) weigh 4x less in the long run, which isolates the per-evaluation cost. Before
   them, ``loop+store/first_run`` (one round, random searcher) takes the one-time costs of the
   first run in a process (imports and first use of the loop, store and searcher code), so they
   do not land on whichever case comes first; its idle is that first run's start, not a rate.
   Driver overhead per evaluation = driver time in submit/wait (not blocked) / evaluations, and
   the driver process's whole CPU time (loop, store, searcher, Ray client) / evaluations.
2. A real zoo search (HF backend, ``experiments/demo.yaml``, random searcher) with 1 and 2 Ray
   workers plus the in-process pool: the speed-up on this machine (2 cores: bounded by them).

Writes benchmarks/results/ray_runtime.json after each part (``--parts simulated,zoo``; a part
not named keeps its earlier figures), each with the machine, versions and load average, since
on a shared 2-core machine the load of other jobs moves every figure. ``--quick`` shrinks budgets.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from _machine import machine

ROOT = Path(__file__).resolve().parents[1]
SIM = "evomerge.runtime.simulated:SimulatedEvaluator"


def sim_experiment(name: str, searcher: dict, budget: int, sleep: float, workers: int) -> dict:
    return {"name": name, "models": {"base": "zoo:base", "sources": ["zoo:a", "zoo:b"]},
            "search_space": {"kind": "parameter", "method": "dare_ties", "weight": {"low": 0.0, "high": 2.0}},
            "fitness": {"tasks": ["sim"], "options": {"sleep": sleep}}, "searcher": searcher,
            "budget": budget, "seed": 0, "backend": SIM, "workers": workers,
            "resources": {"cpus_per_worker": 0.25}}


def measured(pool: Any, run: Any) -> dict[str, Any]:
    """Run ``run()`` and report the pool's idle fraction and the driver's costs over it."""
    s0, t0, c0 = pool.stats(), time.perf_counter(), time.process_time()
    n = run()
    wall, cpu, s1 = time.perf_counter() - t0, time.process_time() - c0, pool.stats()
    busy, alive = s1.busy_s - s0.busy_s, s1.alive_s - s0.alive_s
    return {"evaluations": n, "wall_s": round(wall, 3), "idle_fraction": round(1 - busy / alive, 4),
            "worker_busy_s": round(busy, 3), "worker_up_s": round(alive, 3),
            "pool_driver_ms_per_eval": round(1e3 * (s1.driver_s - s0.driver_s) / n, 3),
            "driver_busy_fraction": round(1 - (s1.waited_s - s0.waited_s) / wall, 4),
            "roundtrip_ms_per_eval": round(1e3 * (s1.roundtrip_s - s0.roundtrip_s) / n, 3),
            "driver_cpu_ms_per_eval": round(1e3 * cpu / n, 3),
            "requeued": s1.requeued - s0.requeued, "failed": s1.failed - s0.failed}


def feed_pool(pool: Any, n: int) -> int:
    """Keep ``capacity`` jobs in flight until n results are back (no store, no searcher)."""
    from evomerge.runtime.pool import EvalJob

    recipe = {"kind": "parameter", "sources": [{"model": "a", "parameters": {"weight": 0.5}}]}
    sent = got = 0
    while got < n:
        while sent < n and sent - got < pool.capacity:
            pool.submit(EvalJob(sent, recipe))
            sent += 1
        got += len(pool.wait(timeout=5.0))
    return got


def run_search(exp: dict, tmp: Path, workers: int | None = None) -> tuple[Any, Any]:
    """Open a run like `evomerge run` does; returns (pool, a callable running the loop)."""
    from evomerge.runtime.driver import open_run
    from evomerge.runtime.loop import run_loop

    path = tmp / f"{exp['name']}.yaml"
    path.write_text(yaml.safe_dump(exp))
    store, session, pool = open_run(path, None, workers, tmp / "runs")
    return pool, lambda: run_loop(store, session, pool, exp["budget"], show_progress=False).evaluated


def feed_searcher(pool: Any, name: str, options: dict, n: int, dim: int = 10) -> int:
    """The loop's policy (capacity in flight, ask one at a time, tell each result) without a store."""
    import numpy as np

    from evomerge.runtime.pool import EvalJob
    from evomerge.search import SpaceInfo, make_searcher
    from evomerge.search.base import Outcome

    info = SpaceInfo(lower=np.zeros(dim), upper=np.ones(dim), x0=np.full(dim, 0.5), initial=(), n_objectives=1)
    searcher = make_searcher(name, info, options, seed=0)
    in_flight, told = 0, 0
    while told < n:
        while in_flight < pool.capacity and told + in_flight < n:
            got = searcher.ask(1)
            if not got:
                break                      # a generation waits for its stragglers
            recipe = {"kind": "parameter", "sources": [{"model": "a", "parameters": {"weight": got[0].x.tolist()}}]}
            pool.submit(EvalJob(got[0].id, recipe))
            in_flight += 1
        for r in pool.wait(timeout=5.0):
            searcher.tell(r.candidate_id, Outcome(values=(r.scores["sim"],)) if not r.failed else Outcome.failure(r.error))
            in_flight, told = in_flight - 1, told + 1
    return told


def simulated(tmp: Path, workers: int, sleep: float, rounds: int) -> dict[str, Any]:
    from evomerge.runtime.pool import EvaluatorSpec
    from evomerge.runtime.ray_pool import RayPool
    from evomerge.runtime.ray_support import WorkerResources

    budget, out = workers * rounds, {}
    spec = EvaluatorSpec(sources=(), tasks=("sim",), backend=SIM, options={"sleep": sleep})
    pop_small, pop_fit = 10, 2 * workers
    feed_searcher(None, "cmaes", {}, 0)            # imports and first-use costs, outside the clock
    with RayPool(spec, workers, WorkerResources(num_cpus=0.25)) as pool:
        out["pool_only"] = measured(pool, lambda: feed_pool(pool, budget))
        out["pool+random"] = measured(pool, lambda: feed_searcher(pool, "random", {}, budget))
        for pop in (pop_small, pop_fit):
            n = max(1, budget // pop) * pop
            out[f"pool+cmaes_pop{pop}"] = measured(
                pool, lambda: feed_searcher(pool, "cmaes", {"population_size": pop}, n))
    cases = {"loop+store/random": {"name": "random"},
             f"loop+store/cmaes_pop{pop_fit}": {"name": "cmaes", "options": {"population_size": pop_fit}},
             "loop+store/cmaes_default_pop": {"name": "cmaes"}}  # rounded up to a multiple of the workers
    pool, go = run_search(sim_experiment("first-run", {"name": "random"}, workers, sleep, workers), tmp)
    with pool:
        out["loop+store/first_run"] = measured(pool, go)
    for label, searcher in cases.items():
        for suffix, n in (("", budget), ("@long", 4 * budget)):
            pool, go = run_search(sim_experiment((label + suffix).replace("/", "-").replace("+", "-")
                                                 .replace("@", "-"), searcher, n, sleep, workers), tmp)
            with pool:
                out[label + suffix] = measured(pool, go)
    return out


def zoo_search(tmp: Path, budget: int) -> dict[str, Any]:
    """The demo experiment with a random searcher, in process and on 1 and 2 Ray workers."""
    from evomerge.runtime.driver import open_run
    from evomerge.runtime.loop import run_loop
    from evomerge.runtime.ray_pool import RayPool

    from evomerge.zoo import build

    zoo = Path(os.environ.get("EVOMERGE_ZOO") or ROOT / ".cache" / "zoo")
    os.environ["EVOMERGE_ZOO"] = str(zoo if (zoo / "manifest.json").exists() else build(zoo))
    exp = yaml.safe_load((ROOT / "experiments" / "demo.yaml").read_text())
    exp["search_space"] = str((ROOT / "experiments" / exp["search_space"]).resolve())
    exp.update(budget=budget, searcher={"name": "random"}, resources={"cpus_per_worker": 1})
    out: dict[str, Any] = {"experiment": "experiments/demo.yaml, searcher random", "budget": budget}
    for label, workers in (("in_process", 0), ("ray_1_worker", 1), ("ray_2_workers", 2)):
        path = tmp / f"zoo-{label}.yaml"
        path.write_text(yaml.safe_dump({**exp, "name": f"zoo-{label}"}))
        t0 = time.perf_counter()
        store, session, pool = open_run(path, None, 1, tmp / "runs")    # the in-process pool
        if workers:                      # replaced by a Ray pool (open_run uses Ray from 2 workers)
            pool.close()
            t0 = time.perf_counter()
            pool = RayPool(session.spec, workers, session.experiment.resources)
        startup = time.perf_counter() - t0      # evaluator(s) built: sources loaded, model allocated
        go = lambda: run_loop(store, session, pool, budget, show_progress=False).evaluated  # noqa: E731
        with contextlib.closing(pool):
            res = measured(pool, go) if workers else {"evaluations": go(), "wall_s": None}
        if not workers:
            res["wall_s"] = round(time.perf_counter() - t0 - startup, 3)
        out[label] = {**res, "startup_s": round(startup, 3)}
    ray1, ray2 = out["ray_1_worker"]["wall_s"], out["ray_2_workers"]["wall_s"]
    out["speedup_2_vs_1_ray_workers"] = round(ray1 / ray2, 3)
    out["speedup_2_ray_workers_vs_in_process"] = round(out["in_process"]["wall_s"] / ray2, 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller budgets (a smoke run)")
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--sleep", type=float, default=1.0)
    ap.add_argument("--parts", default="simulated,zoo", help="which parts to (re)measure; others are kept")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "ray_runtime.json")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    from evomerge.runtime.ray_support import connect

    ray, _ = connect(None, num_cpus=os.cpu_count())
    result: dict[str, Any] = json.loads(args.out.read_text()) if args.out.exists() else {}
    parts = {p.strip() for p in args.parts.split(",")}
    with tempfile.TemporaryDirectory(prefix="ray-bench-") as tmp:
        if "simulated" in parts:
            result["simulated"] = {"machine": machine("ray", "torch"), "workers": args.workers,
                                   "evaluation_s": args.sleep, "cpus_per_worker": 0.25,
                                   **simulated(Path(tmp), args.workers, args.sleep, 3 if args.quick else 8)}
            result["simulated"]["machine"]["load_avg_end"] = os.getloadavg()
            save(args.out, result)
        if "zoo" in parts:
            result["zoo"] = {"machine": machine("ray", "torch"), **zoo_search(Path(tmp), 6 if args.quick else 16)}
            result["zoo"]["machine"]["load_avg_end"] = os.getloadavg()
            save(args.out, result)
    ray.shutdown()
    print(json.dumps(result, indent=2))


def save(out: Path, result: dict[str, Any]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())

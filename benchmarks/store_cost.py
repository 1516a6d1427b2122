"""Driver CPU per stored evaluation: the run store before and after writing Optuna's rows directly.

``before`` is evomerge/runtime/store.py as of commit 3fd38c8 (every write through Optuna's
storage API: the trial from a template, its parameters in a second transaction, the result
attribute and the state flip in two more), loaded from git into this process; ``after`` is
the working tree's (one transaction per step, evomerge/runtime/optuna_rows.py). Both run here,
alternating, on fresh SQLite runs in WAL mode, so machine load hits them alike:

1. ``store``: N evaluations of what the loop stores per candidate: add_candidate (12 genes,
   a recipe), finish (1007 per-item scores, timings), save_searcher_state (a CMA-ES state for
   12 genes); ``store+racing`` adds 4 rungs (add_rung) per candidate, as a race of the zoo demo
   does on average. CPU ms per evaluation (process time) and wall ms.
2. ``synchronous``: ``after`` with PRAGMA synchronous=FULL (an fsync per commit: durable
   against power loss too) vs the store's NORMAL (durable against the process being killed):
   wall ms per evaluation, the price of the fsyncs.
3. ``loop``: the whole driver, run_loop with CMA-ES (population 16) and an in-process evaluator
   that returns at once (SimulatedEvaluator, sleep 0): driver CPU ms per evaluation.

Implied idle fraction of k workers with T-second evaluations: each result waits for the
driver to store it, tell, ask and store the next candidate (c = loop CPU per evaluation) and
for the pool's round trip r (2.6 ms: benchmarks/results/ray_runtime.json, pool+random); the
driver is one server loaded rho = k c / T, so a result also queues W = rho c / (2 (1 - rho))
(M/D/1). idle = (r + c + W) / (T + r + c + W). The same model on ray_runtime.json's measured
driver cost (28.4 ms, loop+store/random) gives 3.6 % against its measured 4.65 %: it
underestimates (a generational searcher's results come in bursts), so the JSON also scales the
idle fractions ray_runtime.json measured with the old store: pool-only idle + (loop idle -
pool-only idle) x after / before.

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/store_cost.py [--n 200] [--rounds 5]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from _machine import machine

ROOT = Path(__file__).resolve().parent.parent
BEFORE = "3fd38c8"
GENES = 12
ROUNDTRIP_S = 0.0026


def store_module(rev: str) -> Any:
    """evomerge/runtime/store.py as of git revision ``rev``, as a module of its own."""
    src = subprocess.run(["git", "show", f"{rev}:evomerge/runtime/store.py"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    spec = importlib.util.spec_from_loader(f"store_{rev}", loader=None)
    mod = importlib.util.module_from_spec(spec)
    exec(compile(src, f"store.py@{rev}", "exec"), mod.__dict__)
    return mod


def new_store(mod: Any, folder: Path, name: str, synchronous: str | None = None) -> Any:
    from evomerge.runtime.store import gene_meta

    names = [f"g{i}" for i in range(GENES)]
    store = mod.RunStore.create(mod.sqlite_url(folder / f"{name}.db"), name, {"name": name}, "cmaes",
                                {"score": "maximize"}, 10**6,
                                extra={"genes": gene_meta(names, [0.0] * GENES, [2.0] * GENES)})
    if synchronous:
        from sqlalchemy import event

        engine = store.storage.engine
        event.listen(engine, "connect", lambda conn, _r: conn.execute(f"PRAGMA synchronous={synchronous}"))
        engine.dispose()
    return store


def payload(i: int) -> tuple[list[float], dict[str, Any], Any, dict[str, Any]]:
    import numpy as np

    from evomerge.evaluate.result import EvalResult

    rng = np.random.default_rng(i)
    genome = rng.uniform(0, 2, GENES).tolist()
    recipe = {"kind": "parameter", "method": "task_arithmetic", "base": "zoo:base",
              "sources": [{"model": m, "parameters": {"weight": {f"layers.{g}.": w for g, w in enumerate(genome[:6])}}}
                          for m in ("zoo:math", "zoo:words")], "parameters": {"lambda": 1.0}}
    items = rng.integers(0, 2, 1007).astype(float).tolist()
    result = EvalResult(i, scores={"math_words": sum(items) / len(items)}, item_scores={"math_words": items},
                        timings={"materialize": 0.1, "score": 0.9, "total": 1.0}, worker="w0")
    state = {"searcher": "cmaes", "version": 1, "mean": genome, "sigma": 0.3,
             "C": rng.normal(size=(GENES, GENES)).tolist(), "pc": genome, "ps": genome, "generation": i}
    return genome, recipe, result, state


def store_evaluations(store: Any, n: int, rungs: int) -> tuple[float, float]:
    """(CPU s, wall s) for n stored evaluations."""
    data = [payload(i) for i in range(n)]
    c0, t0 = time.process_time(), time.perf_counter()
    for i, (genome, recipe, result, state) in enumerate(data):
        store.add_candidate(i, genome, recipe, seq=2 * i, seed=0)
        for k in range(rungs):
            store.add_rung(i, k, {"items": [0, 38 * 2 ** k], "item_scores": {"math_words": [1.0] * (38 * 2 ** k)},
                                  "timings": {"score": 0.1}, "worker": "w0"})
        store.finish(i, result, [result.scores["math_words"]], seq=2 * i + 1)
        store.save_searcher_state(state, 2 * i + 1)
    return time.process_time() - c0, time.perf_counter() - t0


def loop_evaluations(mod: Any, folder: Path, name: str, n: int) -> float:
    """Driver CPU s for a run_loop of n evaluations with an evaluator that returns at once."""
    from evomerge.experiment import Experiment
    from evomerge.runtime.inprocess import InProcessPool
    from evomerge.runtime.loop import run_loop
    from evomerge.runtime.session import build_session
    from evomerge.runtime.store import gene_meta

    exp = Experiment.model_validate({
        "name": name, "models": {"base": "zoo:base", "sources": ["zoo:math", "zoo:words"]},
        "search_space": {"kind": "parameter", "method": "task_arithmetic", "groups": "blocks",
                         "weight": {"low": 0.0, "high": 2.0, "init": 1.0}},
        "fitness": {"tasks": ["sim"]}, "searcher": {"name": "cmaes", "options": {"population_size": 16}},
        "budget": n, "seed": 0, "backend": "evomerge.runtime.simulated:SimulatedEvaluator"})
    session = build_session(exp)
    sp = session.space
    store = mod.RunStore.create(mod.sqlite_url(folder / f"{name}.db"), name, exp.model_dump(mode="json"), "cmaes",
                                exp.objective_directions(), n,
                                extra={"genes": gene_meta(sp.gene_labels(), sp.lower, sp.upper)})
    pool = InProcessPool(session.spec)
    c0 = time.process_time()
    run_loop(store, session, pool, n, show_progress=False)
    return time.process_time() - c0


def implied_idle(c: float, workers: int = 8, t: float = 1.0, r: float = ROUNDTRIP_S) -> float:
    rho = workers * c / t
    wait = rho * c / (2 * (1 - rho)) if rho < 1 else float("inf")
    return (r + c + wait) / (t + r + c + wait)


def scaled_idle(ratio: float, measured: Path = ROOT / "benchmarks" / "results" / "ray_runtime.json") -> dict[str, Any]:
    """ray_runtime.json's measured idle fractions (8 workers x 1 s, old store), with the part the
    driver's loop added scaled by ``ratio`` = after / before loop CPU per evaluation."""
    if not measured.exists():
        return {}
    sim = json.loads(measured.read_text())["simulated"]
    pairs = {"random": ("pool+random", "loop+store/random"), "cmaes_pop16": ("pool+cmaes_pop16", "loop+store/cmaes_pop16")}
    out = {}
    for name, (pool, loop) in pairs.items():
        p, l = sim[pool]["idle_fraction"], sim[loop]["idle_fraction"]
        out[name] = {"measured_before": l, "pool_only": p, "scaled_after": round(p + (l - p) * ratio, 4)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="evaluations per measurement")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "store_cost.json")
    args = ap.parse_args()
    import evomerge.runtime.store as after

    stores = {"before": store_module(BEFORE), "after": after}
    out: dict[str, Any] = {"benchmark": "store_cost", "machine": {**machine("optuna", "sqlalchemy"),
                                                                     "sqlite": __import__("sqlite3").sqlite_version}, "before": f"store.py at {BEFORE}",
                           "after": "working tree", "n": args.n, "rounds": args.rounds}
    runs: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for r in range(args.rounds):
            for which, mod in stores.items():
                for part, rungs in (("store", 0), ("store+racing", 4)):
                    cpu, wall = store_evaluations(new_store(mod, folder, f"{part[:5]}{rungs}{which}{r}"), args.n, rungs)
                    runs.setdefault(f"{part}/{which}/cpu", []).append(cpu / args.n)
                    runs.setdefault(f"{part}/{which}/wall", []).append(wall / args.n)
                runs.setdefault(f"loop/{which}/cpu", []).append(
                    loop_evaluations(mod, folder, f"loop{which}{r}", args.n) / args.n)
            for sync in ("NORMAL", "FULL"):
                _, wall = store_evaluations(new_store(after, folder, f"sync{sync}{r}", sync), args.n, 0)
                runs.setdefault(f"synchronous/{sync}/wall", []).append(wall / args.n)
            print(f"round {r + 1}/{args.rounds} done", flush=True)
    ms = {k: round(1e3 * statistics.median(v), 3) for k, v in runs.items()}
    out["median_ms_per_evaluation"] = ms
    out["all_ms_per_evaluation"] = {k: [round(1e3 * x, 3) for x in v] for k, v in runs.items()}
    out["ratio_before_over_after"] = {p: round(ms[f"{p}/before/cpu"] / ms[f"{p}/after/cpu"], 2)
                                      for p in ("store", "store+racing", "loop")}
    out["implied_idle_8_workers_1s"] = {w: round(implied_idle(ms[f"loop/{w}/cpu"] / 1e3), 4) for w in stores}
    out["implied_idle_model"] = ("idle = (r + c + W) / (T + r + c + W), c = loop CPU per evaluation, r = "
                                 f"{1e3 * ROUNDTRIP_S} ms Ray round trip, W = rho c / (2 (1 - rho)), rho = 8 c / T, T = 1 s")
    out["idle_8_workers_1s_scaled_from_ray_runtime"] = scaled_idle(ms["loop/after/cpu"] / ms["loop/before/cpu"])
    out["note"] = ("loop: the working tree's run_loop with either store, CMA-ES, evaluations of ~12 item scores; "
                   "store: zoo-sized payloads (1007 item scores, a 12-gene CMA-ES state). Wall times are inflated "
                   "by the machine's load (other jobs); CPU is the driver's own.")
    out["machine"]["load_avg_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    for k in sorted(ms):
        print(f"{k:28s} {ms[k]:8.3f} ms")
    print("before/after:", out["ratio_before_over_after"], "implied idle (8 x 1 s):", out["implied_idle_8_workers_1s"])


if __name__ == "__main__":
    main()

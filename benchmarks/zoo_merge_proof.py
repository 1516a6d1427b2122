"""Does merging the zoo's experts pay? Scores parents, plain merges and a small per-group search.

For one built zoo: the base and every expert on every task (test split); plain task arithmetic
over a (lambda_A, lambda_B) grid chosen on validation; TIES / task arithmetic / linear at
default settings; then a hill-climb over per-group weights (embeddings, each block, head, per
expert) on the validation split, starting from the best plain merge. Every number on the target
comes from the test split, which the search never sees. Writes JSON (and the winning recipe).

    python benchmarks/zoo_merge_proof.py --zoo DIR --out benchmarks/results/zoo_merge_seed0.json
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import torch
from _machine import machine

from evomerge.evaluate.evaluator import Evaluator
from evomerge.runtime.pool import EvalJob, EvaluatorSpec

TARGET, A, B = "math_words", "zoo:math", "zoo:words"
TASKS = ("math_words", "math", "words", "reverse", "count", "story_ppl")
GRID = (0.5, 0.75, 1.0, 1.25, 1.5)
STEPS = (-0.5, -0.25, 0.25, 0.5)
GROUPS = ("embed", "b0", "b1", "b2", "b3", "head")


def ta(la: float, lb: float) -> dict:
    return {"kind": "parameter", "method": "task_arithmetic", "base": "zoo:base", "dtype": "float32",
            "sources": [{"model": A, "parameters": {"weight": la}}, {"model": B, "parameters": {"weight": lb}}],
            "parameters": {"lambda": 1.0}}


def per_group(wa: dict, wb: dict) -> dict:
    def weight(w: dict) -> dict:
        return {"embed": w["embed"], "head": w["head"], "default": [w[f"b{i}"] for i in range(4)]}
    r = ta(1.0, 1.0)
    r["sources"][0]["parameters"]["weight"] = weight(wa)
    r["sources"][1]["parameters"]["weight"] = weight(wb)
    return r


DEFAULTS = {
    "task_arithmetic": ta(1.0, 1.0),
    "ties": {"kind": "parameter", "method": "ties", "base": "zoo:base", "dtype": "float32",
             "sources": [{"model": A, "parameters": {"weight": 1.0, "density": 0.5}},
                         {"model": B, "parameters": {"weight": 1.0, "density": 0.5}}]},
    "linear": {"kind": "parameter", "method": "linear", "dtype": "float32",
               "sources": [{"model": A, "parameters": {"weight": 0.5}}, {"model": B, "parameters": {"weight": 0.5}}]},
}


class Scorer:
    def __init__(self, tasks: tuple[str, ...], split: str):
        self.ev = Evaluator(EvaluatorSpec(sources=("zoo:base", A, B, "zoo:reverse", "zoo:count"),
                                          tasks=tasks, split=split, backend="hf"))
        self.n = 0

    def __call__(self, recipe: dict) -> dict:
        self.n += 1
        res = self.ev.evaluate(EvalJob(self.n, recipe))
        if res.failed:
            raise RuntimeError(res.error)
        return {"scores": res.scores, "items": res.item_scores}


def paired(a: list[float], b: list[float]) -> dict:
    """Mean difference a - b and its standard error over paired items."""
    d = [x - y for x, y in zip(a, b)]
    mean = sum(d) / len(d)
    var = sum((x - mean) ** 2 for x in d) / (len(d) - 1)
    return {"diff": mean, "se": math.sqrt(var / len(d))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--zoo", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--recipe-out", default=None)
    args = ap.parse_args()
    import os
    os.environ["EVOMERGE_ZOO"] = str(Path(args.zoo).resolve())
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    test, val = Scorer(TASKS, "test"), Scorer((TARGET,), "validation")
    one = {name: {"kind": "parameter", "method": "linear", "dtype": "float32",
                  "sources": [{"model": f"zoo:{name}", "parameters": {"weight": 1.0}}]}
           for name in ("base", "math", "words", "reverse", "count")}
    models = {name: test(r) for name, r in one.items()}
    print({n: {k: round(v, 3) for k, v in m["scores"].items()} for n, m in models.items()}, flush=True)
    grid = {(la, lb): val(ta(la, lb))["scores"][TARGET] for la in GRID for lb in GRID}
    (la, lb), best_grid = max(grid.items(), key=lambda kv: kv[1])
    print("grid best", la, lb, best_grid, flush=True)
    plain = {"task_arithmetic_best_grid": test(ta(la, lb)), **{k: test(r) for k, r in DEFAULTS.items()}}
    print({k: round(v["scores"][TARGET], 3) for k, v in plain.items()}, flush=True)
    # hill-climb per-group weights on validation, from the best plain merge
    rng = random.Random(0)
    cur = ({g: la for g in GROUPS}, {g: lb for g in GROUPS})
    cur_val, trace = best_grid, []
    for step in range(args.steps):
        cand = (dict(cur[0]), dict(cur[1]))
        side, group = rng.randrange(2), rng.choice(GROUPS)
        cand[side][group] = round(min(3.0, max(0.0, cand[side][group] + rng.choice(STEPS))), 2)
        v = val(per_group(*cand))["scores"][TARGET]
        trace.append(v)
        if v > cur_val:
            cur, cur_val = cand, v
            print(f"step {step}: val {v:.3f} {cand}", flush=True)
    best = per_group(*cur)
    best_test = test(best)
    parents = {n: models[n]["items"][TARGET] for n in ("math", "words")}
    best_parent = max(parents, key=lambda n: sum(parents[n]))
    out = {
        "zoo": str(args.zoo), "zoo_manifest": json.loads((Path(args.zoo) / "manifest.json").read_text()),
        "machine": machine("torch", "transformers"), "test_items": len(parents["math"]),
        "models": {n: m["scores"] for n, m in models.items()},
        "grid_validation": {f"{a},{b}": v for (a, b), v in grid.items()},
        "plain_test": {k: v["scores"] for k, v in plain.items()},
        "search": {"steps": args.steps, "validation": cur_val, "trace": trace, "weights": cur},
        "best_recipe": best, "best_test": best_test["scores"],
        "margin_vs_best_parent": paired(best_test["items"][TARGET], parents[best_parent]),
        "margin_plain_vs_best_parent": paired(plain["task_arithmetic_best_grid"]["items"][TARGET], parents[best_parent]),
        "seconds": time.perf_counter() - t0, "evaluations": test.n + val.n,
    }
    if args.recipe_out:
        from evomerge.recipe import parse_recipe

        header = (f"# Best per-group task-arithmetic merge of zoo:math and zoo:words for math_words (zoo seed "
                  f"{out['zoo_manifest']['seed']}), found by benchmarks/zoo_merge_proof.py on the validation split.\n"
                  f"# Test accuracy {best_test['scores'][TARGET]:.3f}; parents {models['math']['scores'][TARGET]:.3f} (math), "
                  f"{models['words']['scores'][TARGET]:.3f} (words).\n")
        Path(args.recipe_out).write_text(header + parse_recipe(best).to_yaml())
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps({k: out[k] for k in ("models", "plain_test", "best_test", "margin_vs_best_parent", "seconds")}, indent=1))


if __name__ == "__main__":
    main()

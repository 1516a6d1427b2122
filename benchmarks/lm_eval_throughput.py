"""lm-eval fitness versus native fitness per candidate, same items, same run.

    python benchmarks/lm_eval_throughput.py [--backend hf|vllm] [--items 200] [--candidates 6]
        [--out benchmarks/results/lm_eval_throughput_hf.json]

Run from the repo root. One evaluator (resident zoo sources, one backend) loads each candidate
once; then native ``math_words`` and lm-eval ``math_words`` (fitness/lm_eval) score it, in
alternating order, on the first N validation items. Per candidate it records the materialize
time and each task's scoring time; the ratio compares lm-eval's per-candidate time
(materialize + lm-eval scoring) with the native one (materialize + native scoring), medians
over candidates. The item scores must agree exactly, or the benchmark stops.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch
from _machine import machine

RECIPE = Path("experiments/recipes/zoo_math_words.yaml")
LM_MATH_WORDS = {"lm_eval": "math_words", "include_path": "fitness/lm_eval", "metric": "exact_match",
                 "splits": {"validation": "validation", "test": "test"}}


def candidates(n: int) -> list[dict]:
    """The zoo's best known merge and n-1 variations of its weights (different item scores)."""
    from evomerge.mergekit_config import load_any_recipe

    base = load_any_recipe(RECIPE).to_dict()
    out = []
    for k in range(n):
        recipe = json.loads(json.dumps(base))
        for src in recipe["sources"]:
            w = src["parameters"]["weight"]
            w["default"] = [round(v * (1.0 - 0.05 * k), 4) for v in w["default"]]
        out.append(recipe)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", default="hf", choices=("hf", "vllm"))
    ap.add_argument("--items", type=int, default=200)
    ap.add_argument("--candidates", type=int, default=6)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from evomerge.evaluate.evaluator import Evaluator
    from evomerge.recipe import parse_recipe
    from evomerge.runtime.pool import EvaluatorSpec

    host = machine("torch", "transformers", "lm_eval", *(["vllm"] if args.backend == "vllm" else []))
    spec = EvaluatorSpec(("zoo:base", "zoo:math", "zoo:words"), ("math_words", LM_MATH_WORDS), "validation",
                         args.backend, {"limit": args.items, "batch_size": args.items})
    ev = Evaluator(spec)
    native, lm = ev.tasks
    cands = candidates(args.candidates)
    ev.backend.load(parse_recipe(cands[0]))          # warm-up (vLLM scores only after a load)
    native.evaluate(ev.backend, "validation", 8)
    lm.evaluate(ev.backend, "validation", 8)
    rows = []
    for k, recipe in enumerate(cands):
        t0 = time.perf_counter()
        ev.backend.load(parse_recipe(recipe))
        materialize = time.perf_counter() - t0
        order = (native, lm) if k % 2 == 0 else (lm, native)
        timed = {}
        for task in order:
            t1 = time.perf_counter()
            timed[task.name] = (task.evaluate(ev.backend, "validation", args.items), time.perf_counter() - t1)
        (rn, sn), (rl, sl) = timed[native.name], timed[lm.name]
        if rn.item_scores != rl.item_scores:
            raise SystemExit(f"candidate {k}: lm-eval item scores differ from native ones")
        rows.append({"materialize_s": materialize, "native_score_s": sn, "lm_eval_score_s": sl, "score": rn.score})
        print(f"candidate {k}: materialize {materialize:.3f}s  native {sn:.3f}s  lm-eval {sl:.3f}s  "
              f"score {rn.score:.3f}", flush=True)
    close = getattr(ev.backend, "close", None)
    if close:
        close()
    keys = ("materialize_s", "native_score_s", "lm_eval_score_s")
    med = {key: statistics.median(r[key] for r in rows) for key in keys}
    per_native = statistics.median(r["materialize_s"] + r["native_score_s"] for r in rows)
    per_lm = statistics.median(r["materialize_s"] + r["lm_eval_score_s"] for r in rows)
    out = {"benchmark": "lm_eval_throughput", "backend": args.backend, "task": "math_words (validation)",
           "items": args.items, "candidates": args.candidates, "threads": args.threads,
           "per_candidate_s": {"native": per_native, "lm_eval": per_lm},
           "ratio_per_candidate": per_lm / per_native,
           "ratio_scoring_only": med["lm_eval_score_s"] / med["native_score_s"],
           "medians": med, "rows": rows,
           "machine": host | {"load_avg_end": os.getloadavg()}}
    print(f"per candidate: native {per_native:.3f}s, lm-eval {per_lm:.3f}s, ratio {out['ratio_per_candidate']:.2f} "
          f"(scoring only {out['ratio_scoring_only']:.2f})")
    path = Path(args.out or f"benchmarks/results/lm_eval_throughput_{args.backend}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()

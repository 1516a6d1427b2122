"""Per-candidate cost on the vLLM backend (materialize / swap + prefix-cache reset / score)
against the HF backend, on the zoo's target task, in the same process.

    python benchmarks/vllm_swap.py [--zoo DIR] [--limit 300] [--candidates 12]
                                   [--out benchmarks/results/vllm_swap.json]

Both backends are real Evaluators built from the same ``EvaluatorSpec`` (only ``backend``
differs) and score the same DARE-TIES candidates over zoo:base + zoo:math + zoo:words, taking
turns candidate by candidate so that load from other jobs hits both alike. Reports medians per
phase, swap's share of a vLLM candidate's total time (target: under 10 %), whether both
backends gave identical per-item scores, and the machine, versions and load average.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from pathlib import Path

from _machine import machine

SOURCES = ("zoo:base", "zoo:math", "zoo:words")
PHASES = ("materialize", "swap", "score", "total")


def candidates(n: int, seed: int) -> list[dict]:
    """DARE-TIES recipes with per-source weight and density, like a search proposes them."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        srcs = [{"model": m, "parameters": {"weight": round(rng.uniform(0.2, 1.8), 3),
                                            "density": round(rng.uniform(0.3, 1.0), 3)}}
                for m in ("zoo:math", "zoo:words")]
        out.append({"kind": "parameter", "method": "dare_ties", "base": "zoo:base", "sources": srcs,
                    "parameters": {"lambda": 1.0}, "seed": rng.randrange(1 << 30)})
    return out


def summarize(rows: list[dict]) -> dict:
    return {p: statistics.median(r[p] for r in rows) for p in PHASES if all(p in r for r in rows)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--zoo", default=None)
    ap.add_argument("--task", default="math_words")
    ap.add_argument("--split", default="validation")
    ap.add_argument("--limit", type=int, default=300)
    ap.add_argument("--candidates", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/results/vllm_swap.json")
    args = ap.parse_args()
    if args.zoo:
        os.environ["EVOMERGE_ZOO"] = str(Path(args.zoo).resolve())
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")

    from evomerge.evaluate.evaluator import Evaluator
    from evomerge.runtime.pool import EvalJob, EvaluatorSpec

    host = machine("torch", "transformers", "vllm")
    spec = EvaluatorSpec(sources=SOURCES, tasks=(args.task,), split=args.split, backend="vllm",
                         options={"limit": args.limit})
    t0 = time.perf_counter()
    evaluators = {"vllm": Evaluator(spec)}
    start_vllm = time.perf_counter() - t0
    t0 = time.perf_counter()
    evaluators["hf"] = Evaluator(EvaluatorSpec(**{**spec.__dict__, "backend": "hf"}))
    start_hf = time.perf_counter() - t0

    recipes = candidates(args.warmup + args.candidates, seed=0)
    rows: dict[str, list[dict]] = {"vllm": [], "hf": []}
    agree, items = 0, 0
    for i, recipe in enumerate(recipes):
        results = {name: ev.evaluate(EvalJob(i, recipe)) for name, ev in evaluators.items()}
        for name, res in results.items():
            if res.error:
                raise SystemExit(f"{name}: candidate {i} failed: {res.error}")
        a, b = results["vllm"].item_scores[args.task], results["hf"].item_scores[args.task]
        agree += sum(x == y for x, y in zip(a, b))
        items += len(a)
        if i >= args.warmup:
            for name, res in results.items():
                rows[name].append({**res.timings, "score": res.timings["score"], "value": res.scores[args.task]})
        print(f"candidate {i}: " + "  ".join(
            f"{n} " + " ".join(f"{p}={results[n].timings.get(p, 0):.3f}" for p in PHASES) for n in results),
            flush=True)

    med = {name: summarize(r) for name, r in rows.items()}
    v = med["vllm"]
    swap_share = v["swap"] / v["total"]
    report = {
        "benchmark": "vllm_swap",
        "task": {"name": args.task, "split": args.split, "items": args.limit},
        "model": {"sources": SOURCES, "recipe": "dare_ties over base + math + words, random weight/density"},
        "candidates": args.candidates, "warmup_candidates": args.warmup,
        "engine_start_s": {"vllm": start_vllm, "hf": start_hf},
        "median_s": med,
        "per_candidate_s": rows,
        "vllm_swap_share_of_total": swap_share,
        "target_swap_share": 0.10,
        "meets_target": swap_share < 0.10,
        "vllm_vs_hf_total_speedup": med["hf"]["total"] / v["total"],
        "item_scores_identical_fraction": agree / max(items, 1),
        "machine": host | {"load_avg_end": os.getloadavg()},
        "note": "one process; both backends share the threads the vLLM CPU worker binds; the machine "
                "may be shared with other jobs (see load averages)",
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("median_s", "vllm_swap_share_of_total", "item_scores_identical_fraction")},
                     indent=2))
    for ev in evaluators.values():
        close = getattr(ev.backend, "close", None)
        if close:
            close()


if __name__ == "__main__":
    main()

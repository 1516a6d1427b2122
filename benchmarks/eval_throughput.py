"""HF backend throughput on the zoo: items/s batched versus one request at a time.

    python benchmarks/eval_throughput.py [--zoo DIR] [--items 200] [--out benchmarks/results/eval_throughput.json]

Scores zoo:math on the first N validation items of each task kind (generation, multiple choice,
perplexity), once with the batched backend and once with batch size 1 (the peer), in the same
process, and writes JSON with the machine, versions and the load average during the run.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from _machine import machine

from evomerge.evaluate.hf_backend import HFBackend
from evomerge.evaluate.tasks import load_task

TASKS = ("math_words", "count", "story_ppl")


def rate(backend: HFBackend, task, n: int, repeats: int) -> dict:
    task.evaluate(backend, "validation", min(n, 8))  # warm-up
    best, score = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        score = task.evaluate(backend, "validation", n).score
        best = min(best, time.perf_counter() - start)
    return {"items_per_s": n / best, "seconds": best, "score": score}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--zoo", default=None)
    ap.add_argument("--items", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="benchmarks/results/eval_throughput.json")
    args = ap.parse_args()
    if args.zoo:
        os.environ["EVOMERGE_ZOO"] = str(Path(args.zoo).resolve())
    torch.set_num_threads(args.threads)
    host = machine("torch", "transformers")
    batched = HFBackend.from_pretrained("zoo:math", batch_size=128)
    single = HFBackend(batched.model, batched.tokenizer, batch_size=1)
    results = {}
    for name in TASKS:
        task = load_task(name)
        b, s = rate(batched, task, args.items, args.repeats), rate(single, task, args.items, args.repeats)
        if abs(b["score"] - s["score"]) > 1e-6 * max(1.0, abs(s["score"])):  # padding: float rounding only
            raise SystemExit(f"{name}: batched score {b['score']} != one-at-a-time {s['score']}")
        results[name] = {"kind": task.kind, "batched": b, "one_at_a_time": s,
                         "speedup": b["items_per_s"] / s["items_per_s"]}
        print(f"{name:12s} batched {b['items_per_s']:8.1f} items/s  one-at-a-time {s['items_per_s']:7.1f} items/s"
              f"  x{results[name]['speedup']:.1f}", flush=True)
    out = {"benchmark": "eval_throughput", "model": "zoo:math", "items": args.items, "threads": args.threads,
           "machine": host | {"load_avg_end": os.getloadavg()}, "results": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()

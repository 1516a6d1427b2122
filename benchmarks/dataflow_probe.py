"""Why data-flow search alone scores ~0.01 on the zoo's math_words: hand-built layer paths,
scored directly, show which routes the zoo can reward at all.

A data-flow recipe keeps each layer as it is and only picks the path (and the head: embeddings,
final norm and lm_head come from ``embeddings_from``). The target asks for word problems answered
as number words: `math` solves the problems but answers in digits, `words` answers in words but
cannot solve problems. Each probe below is one path, scored on the first ``--limit`` validation
items of math_words (and of math, words for context).

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/dataflow_probe.py
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from _machine import machine

ROOT = Path(__file__).resolve().parent.parent
M, W = "zoo:math", "zoo:words"


def path(emb: int, hops: list[tuple[int, int]], scale: float = 1.0) -> dict[str, Any]:
    return {"kind": "dataflow", "sources": [{"model": M}, {"model": W}], "embeddings_from": emb,
            "layers": [{"source": s, "layer": l, "scale": scale if k and s != hops[k - 1][0] else 1.0}
                       for k, (s, l) in enumerate(hops)]}


PROBES = {
    "math (start point of evo_dfs)": path(0, [(0, i) for i in range(4)]),
    "words": path(1, [(1, i) for i in range(4)]),
    "math layers, words head": path(1, [(0, i) for i in range(4)]),
    "math 0-3 + words 3, math head": path(0, [(0, 0), (0, 1), (0, 2), (0, 3), (1, 3)]),
    "math 0-3 + words 3, words head": path(1, [(0, 0), (0, 1), (0, 2), (0, 3), (1, 3)]),
    "math 0-3 + words 2-3, words head": path(1, [(0, 0), (0, 1), (0, 2), (0, 3), (1, 2), (1, 3)]),
    "math 0-2 + words 3, words head": path(1, [(0, 0), (0, 1), (0, 2), (1, 3)]),
    "math 0-1 + words 2-3, words head": path(1, [(0, 0), (0, 1), (1, 2), (1, 3)]),
    "words 0-1 + math 2-3, words head": path(1, [(1, 0), (1, 1), (0, 2), (0, 3)]),
    "math 0-3 + words 0-3, words head": path(1, [(0, i) for i in range(4)] + [(1, i) for i in range(4)]),
    "math 0-3 + words 3 x0.5, words head": path(1, [(0, 0), (0, 1), (0, 2), (0, 3), (1, 3)], 0.5),
    "math 0-3 + words 3 x2, words head": path(1, [(0, 0), (0, 1), (0, 2), (0, 3), (1, 3)], 2.0),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=300)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "dataflow_probe.json")
    args = ap.parse_args()
    import torch

    from evomerge.evaluate.evaluator import Evaluator
    from evomerge.runtime.pool import EvalJob, EvaluatorSpec

    torch.set_num_threads(1)
    ev = Evaluator(EvaluatorSpec((M, W), ("math_words", "math", "words"), split="validation", backend="hf",
                                 options={"limit": args.limit}))
    rows = {}
    t0 = time.perf_counter()
    for name, recipe in PROBES.items():
        r = ev.evaluate(EvalJob(len(rows), recipe))
        rows[name] = {"recipe": recipe, "scores": r.scores, "error": r.error}
        print(f"{name:40s} " + (" ".join(f"{k} {v:.3f}" for k, v in r.scores.items()) if not r.error else r.error),
              flush=True)
    out = {"benchmark": "dataflow_probe", "split": "validation", "limit": args.limit,
           "machine": machine("torch", "transformers"), "probes": rows, "wall_s": round(time.perf_counter() - t0, 1)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()

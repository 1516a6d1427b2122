"""Which layer routes can the zoo reward on math_words? Hand-built data-flow paths, scored directly.

A data-flow recipe keeps each layer as it is and only picks the path (and the head: embeddings,
final norm and lm_head come from ``embeddings_from``). The target asks for word problems answered
as number words: `math` solves the problems but answers in digits, `words` answers in words but
cannot solve problems. Both are full fine-tunes of the base (every block moved), and no path
through their layers writes math's answer as a word. `words_top` learned the same skill with
blocks 0-2 and the embeddings frozen (only block 3, final norm and head trained): its block 3
reads what the base's blocks 0-2 write, so math's blocks 0-2 can feed it. `words_stack` was
trained on top of math's frozen blocks: math 0-3 -> words_stack 0-3 is an 8-block route, next to
plain task arithmetic of the two (4 blocks). Each probe below is one
path, scored on the first ``--limit`` validation items of math_words (and of math, words).

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
M, W, T, S = "zoo:math", "zoo:words", "zoo:words_top", "zoo:words_stack"  # sources 0, 1, 2, 3


def ta(b: str, wa: float = 1.0, wb: float = 1.0) -> dict[str, Any]:
    return {"kind": "parameter", "method": "task_arithmetic", "base": "zoo:base",
            "sources": [{"model": M, "parameters": {"weight": wa}}, {"model": b, "parameters": {"weight": wb}}]}


TA = ta(T)


def path(emb: int, hops: list[tuple[int, int]], scale: float = 1.0, head: int | None = None) -> dict[str, Any]:
    out = {"kind": "dataflow", "sources": [{"model": M}, {"model": W}, {"model": T}, {"model": S}], "embeddings_from": emb,
           "layers": [{"source": s, "layer": l, "scale": scale if k and s != hops[k - 1][0] else 1.0}
                      for k, (s, l) in enumerate(hops)]}
    if head is not None:
        out["head_from"] = head
    return out


def hybrid(hops: list[tuple[int, int]]) -> dict[str, Any]:
    """A path over [TA (1, 1) of math + words_top, math, words_top]; embeddings and head from the merge."""
    return {"kind": "dataflow", "sources": [{"recipe": TA}, {"model": M}, {"model": T}], "embeddings_from": 0,
            "layers": [{"source": s, "layer": l} for s, l in hops]}


MERGE = [(0, 0), (0, 1), (0, 2), (0, 3)]
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
    "math 0-2 + words 3, math embeddings, words head": path(0, [(0, 0), (0, 1), (0, 2), (1, 3)], head=1),
    "words_top": path(2, [(2, i) for i in range(4)]),
    "math layers, words_top head": path(0, [(0, i) for i in range(4)], head=2),
    "math 0-2 + words_top 3, words_top embeddings + head": path(2, [(0, 0), (0, 1), (0, 2), (2, 3)]),
    "math 0-2 + words_top 3, math embeddings, words_top head": path(0, [(0, 0), (0, 1), (0, 2), (2, 3)], head=2),
    "math 0-3 + words_top 3, math embeddings, words_top head": path(0, [(0, i) for i in range(4)] + [(2, 3)], head=2),
    "math 0-2 + words_top 3 x0.75, math embeddings, words_top head":
        path(0, [(0, 0), (0, 1), (0, 2), (2, 3)], 0.75, head=2),
    "math 0-1 + words_top 2-3, math embeddings, words_top head":
        path(0, [(0, 0), (0, 1), (2, 2), (2, 3)], head=2),
    "hybrid: TA(1,1) merge of math + words_top": hybrid(MERGE),
    "hybrid: merge + words_top 3": hybrid(MERGE + [(2, 3)]),
    "hybrid: merge + merge 3 again": hybrid(MERGE + [(0, 3)]),
    "hybrid: merge 0-2 + words_top 3": hybrid(MERGE[:3] + [(2, 3)]),
    "hybrid: merge 0-2 + math 3 + merge 3": hybrid(MERGE[:3] + [(1, 3), (0, 3)]),
    "hybrid: merge 0-2 + merge 2 again + merge 3": hybrid(MERGE[:3] + [(0, 2), (0, 3)]),
    "hybrid: merge 0 + merge 0 again + merge 1-3": hybrid([(0, 0)] + MERGE),
    # words_stack: trained on top of math's frozen embeddings and blocks (docs/ZOO.md "Stacked member")
    "words_stack": path(3, [(3, i) for i in range(4)]),
    "math layers, words_stack head": path(0, [(0, i) for i in range(4)], head=3),
    **{f"math 0-3 + words_stack {k}-3, math embeddings, words_stack head":
       path(0, [(0, i) for i in range(4)] + [(3, i) for i in range(k, 4)], head=3) for k in (3, 2, 1, 0)},
    "math 0-2 + words_stack 0-3, math embeddings, words_stack head":
        path(0, [(0, i) for i in range(3)] + [(3, i) for i in range(4)], head=3),
    **{f"task arithmetic of math + words_stack ({wa}, {wb})": ta(S, wa, wb)
       for wa, wb in ((1.0, 1.0), (1.0, 0.5), (1.0, 1.5), (0.5, 1.0), (1.5, 0.5), (1.0, 0.25))},
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
    ev = Evaluator(EvaluatorSpec(("zoo:base", M, W, T, S), ("math_words", "math", "words"), split="validation", backend="hf",
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

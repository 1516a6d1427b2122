"""Racing vs single fidelity on the zoo's demo search, compared from two finished runs.

Both runs are `evomerge run` of experiments/demo.yaml (same seed, space and searcher); one adds
``racing: {first: 38, eta: 2, z: 2}`` (rungs of 38, 76, 152, 304, 608 and all 1007 validation
items; 38 = two cycles of the split's 19 answers). For each run the curve is the incumbent (best
candidate scored on ALL validation items) against the validation items scored so far, and each
incumbent is re-scored on the full test split.

    PYTHONPATH=. python benchmarks/racing_zoo.py SINGLE_RUN_DIR RACING_RUN_DIR
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from _machine import machine

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))


def curve(run: Path, test) -> dict:
    from evomerge.runtime.store import RunStore

    trials = sorted((t for t in RunStore.open(run).trials() if t.state != "running"), key=lambda t: t.finished)
    points, scored, best = [], 0, None
    for t in trials:
        scored += sum(len(v) for v in t.item_scores.values())
        full = not t.fidelity or t.fidelity.get("full", True)
        if t.state == "complete" and full and (best is None or t.objectives["score"] > best["validation"]):
            best = {"candidate": t.number, "validation": t.objectives["score"], "test": test(t.recipe)["math_words"]}
            points.append({"items": scored, "evaluations": len([p for p in trials if p.finished <= t.finished]), **best})
    partial = sum(1 for t in trials if t.fidelity and not t.fidelity.get("full", True))
    return {"run": str(run), "evaluations": len(trials), "partial": partial, "items": scored, "incumbents": points}


def at(points: list, items: int) -> dict | None:
    done = [p for p in points if p["items"] <= items]
    return done[-1] if done else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("single", type=Path)
    ap.add_argument("racing", type=Path)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "racing_zoo.json")
    args = ap.parse_args()
    import torch

    from search_quality import TestScorer

    torch.set_num_threads(1)
    test = TestScorer(("math_words",), None)
    single, racing = curve(args.single, test), curve(args.racing, test)
    budget = min(single["items"], racing["items"])
    marks = [budget // 4, budget // 2, 3 * budget // 4, budget]
    out = {"benchmark": "racing_zoo", "machine": machine("torch", "transformers", "optuna", "cmaes"),
           "single": single, "racing": racing, "equal_items": budget,
           "at_items": {str(m): {"single": at(single["incumbents"], m), "racing": at(racing["incumbents"], m)}
                        for m in marks}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    for m in marks:
        s, r = out["at_items"][str(m)]["single"], out["at_items"][str(m)]["racing"]
        print(f"{m:6d} items: single {s and (s['validation'], s['test'])}  racing {r and (r['validation'], r['test'])}")


if __name__ == "__main__":
    main()

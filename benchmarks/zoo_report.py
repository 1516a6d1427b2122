"""Render zoo_merge_proof JSON results as the markdown tables of docs/ZOO.md.

    python benchmarks/zoo_report.py benchmarks/results/zoo_merge_seed0.json benchmarks/results/zoo_merge_seed1.json
"""

from __future__ import annotations

import json
import sys

TASKS = ("math_words", "math", "words", "reverse", "count", "story_ppl")


def fmt(task: str, v: float) -> str:
    return f"{v:.1f}" if task == "story_ppl" else f"{v:.3f}"


def main(paths: list[str]) -> None:
    runs = [json.loads(open(p).read()) for p in paths]
    for run in runs:
        seed = run["zoo_manifest"]["seed"]
        print(f"\n### Seed {seed}: every model on every task (test split)\n")
        print("| model | " + " | ".join(TASKS) + " |")
        print("|---" * (len(TASKS) + 1) + "|")
        rows = {**{f"zoo:{k}": v for k, v in run["models"].items()},
                **{f"plain {k}": v for k, v in run["plain_test"].items()}, "per-group search": run["best_test"]}
        for name, scores in rows.items():
            print(f"| {name} | " + " | ".join(fmt(t, scores[t]) for t in TASKS) + " |")
    print("\n### The merge against its parents (target `math_words`, test split)\n")
    print("| seed | test items | A (math) | B (words) | TA default (1, 1) | TA best grid (λA, λB) | TIES default | linear 0.5/0.5 "
          "| per-group search | margin over best parent ± SE |")
    print("|---" * 10 + "|")
    for run in runs:
        m, p, s = run["models"], run["plain_test"], run["best_test"]
        grid = max(run["grid_validation"].items(), key=lambda kv: kv[1])[0]
        mg = run["margin_vs_best_parent"]
        print(f"| {run['zoo_manifest']['seed']} | {run['test_items']} | {m['math']['math_words']:.3f} | {m['words']['math_words']:.3f} "
              f"| {p['task_arithmetic']['math_words']:.3f} | {p['task_arithmetic_best_grid']['math_words']:.3f} ({grid}) "
              f"| {p['ties']['math_words']:.3f} | {p['linear']['math_words']:.3f} | {s['math_words']:.3f} "
              f"| +{mg['diff']:.3f} ± {mg['se']:.3f} |")


if __name__ == "__main__":
    main(sys.argv[1:])

"""The README demo, checked as a user runs it: `evomerge run experiments/demo.yaml` then
`evomerge export`, timed; the exported winner's FULL test-split score (from its model card's
run-time scoring) against the best of 25 plain task-arithmetic merges (5 x 5 grid of per-model
weights 0.5..1.5, the best picked on the same full test split: an optimistic baseline), and
whether the winner was found after the first generation.

    PYTHONPATH=. python benchmarks/demo_check.py [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from _machine import machine

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))


def best_plain_ta() -> dict:
    from search_quality import GRID, TARGET, TestScorer, ta

    test = TestScorer((TARGET,), None)
    grid = {f"{a},{b}": test(ta(a, b))[TARGET] for a in GRID for b in GRID}
    best = max(grid, key=grid.get)
    return {"weights": best, "test": grid[best], "grid": grid}


def demo(seed: int, workdir: Path, finished: Path | None = None) -> dict:
    """Run the demo with ``seed`` (or take ``finished``, a run of it that ran to its budget), export."""
    exp = yaml.safe_load((ROOT / "experiments" / "demo.yaml").read_text())
    exp["seed"] = seed
    exp["search_space"] = str(ROOT / "search_spaces" / Path(exp["search_space"]).name)
    path = workdir / f"demo-{seed}.yaml"
    path.write_text(yaml.safe_dump(exp))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    evo = [sys.executable, "-m", "evomerge.cli"]
    t0 = time.perf_counter()
    runs_dir = finished.parent if finished else workdir / f"runs{seed}"
    # a finished run: --resume does no evaluation and prints the same summary
    args = ["run", "--resume", str(finished)] if finished else ["run", str(path), "--runs-dir", str(runs_dir)]
    run = subprocess.run(evo + args + ["--no-progress"], capture_output=True, text=True, env=env, cwd=workdir)
    run_s = time.perf_counter() - t0
    if run.returncode:
        raise SystemExit(run.stderr)
    if finished:
        from evomerge.runtime.store import RunStore

        done = RunStore.open(finished).trials()
        run_s = (max(t.finished for t in done) - min(t.started for t in done)).total_seconds()
    out = workdir / f"winner{seed}"
    t1 = time.perf_counter()
    exp_run = subprocess.run(evo + ["export", str(runs_dir / exp["name"]), "--trial", "best",
                                    "--out", str(out)], capture_output=True, text=True, env=env, cwd=workdir)
    export_s = time.perf_counter() - t1
    if exp_run.returncode:
        raise SystemExit(exp_run.stderr)
    from evomerge.runtime.store import RunStore

    store = RunStore.open(runs_dir / exp["name"])
    trials = store.trials()
    best = max((t for t in trials if t.state == "complete"), key=lambda t: (t.objectives["score"], -t.number))
    card = (out / "README.md").read_text()
    row = next(line for line in card.splitlines() if line.startswith("| objective **score**"))
    stored, val, test = (float(c) for c in row.split("|")[2:5])
    refs = {}
    compared = card.split("## Compared with", 1)[-1].split("\n## ", 1)[0]
    for line in compared.splitlines()[4:]:             # after the note, a blank line and the header
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0] and not cells[0].startswith("---"):
            refs[cells[0]] = {"stored": float(cells[1]), "validation": float(cells[2]), "test": float(cells[3])}
    from evomerge.search.cmaes_searcher import default_population

    opts = exp["searcher"].get("options") or {}
    first_generation = opts.get("initial_design") or opts.get("population_size") or default_population(len(best.genome))
    return {"seed": seed, "run_s": round(run_s, 1), "export_s": round(export_s, 1), "winner": best.number,
            "first_generation_size": first_generation, "found_after_first_generation": best.number >= first_generation,
            "validation_stored": stored, "validation": val, "test": test, "references": refs,
            "summary": run.stdout.strip().splitlines()[-12:]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "demo.json")
    ap.add_argument("--plain", type=Path, help="reuse the plain-TA grid from this earlier demo.json")
    ap.add_argument("--finished", type=Path, nargs="*", default=[],
                    help="finished demo runs (one per seed, in --seeds order) to export instead of running")
    args = ap.parse_args()
    plain = json.loads(args.plain.read_text())["best_plain_ta"] if args.plain else best_plain_ta()
    print("best plain TA on test:", plain["weights"], plain["test"], flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, seed in enumerate(args.seeds):               # the JSON is rewritten after every seed
            rows.append(demo(seed, Path(tmp), args.finished[k] if k < len(args.finished) else None))
            r = rows[-1]
            print(f"seed {seed}: winner #{r['winner']} test {r['test']:.4f} (val {r['validation']:.4f}); "
                  f"run {r['run_s']} s, export {r['export_s']} s", flush=True)
            out = {"benchmark": "demo_check",
                   "experiment": yaml.safe_load((ROOT / "experiments" / "demo.yaml").read_text()),
                   "machine": machine("torch", "transformers", "optuna", "cmaes"),
                   "best_plain_ta": plain, "runs": rows,
                   "margin_over_best_plain_ta": [r["test"] - plain["test"] for r in rows]}
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out["margin_over_best_plain_ta"]))


if __name__ == "__main__":
    main()

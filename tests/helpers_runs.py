"""Runs written through the real RunStore API (as the loop writes them), for report/export tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evomerge.evaluate.result import EvalResult
from evomerge.runtime.store import RunStore, sqlite_url, write_run_file


def write_run(root: Path, name: str, objectives: dict[str, str], trials: list[dict[str, Any]],
              experiment: dict[str, Any] | None = None, searcher: str = "cmaes", budget: int = 20,
              running: list[dict[str, Any]] = ()) -> Path:
    """runs/NAME (run.json + store.db). Each trial: {recipe, values | error, scores?, item_scores?}."""
    run_dir = root / "runs" / name
    run_dir.mkdir(parents=True)
    url = sqlite_url(run_dir / "store.db")
    store = RunStore.create(url, name, experiment=experiment or {"name": name}, searcher=searcher,
                            objectives=objectives, budget=budget)
    write_run_file(run_dir, url, name)
    seq = 0
    for cid, t in enumerate(trials):
        store.add_candidate(cid, t.get("genome", [float(cid)]), t["recipe"], seq, seed=t.get("seed"))
        seq += 1
        if "error" in t:
            store.finish(cid, EvalResult(cid, error=t["error"]), None, seq)
        else:
            scores = t.get("scores") or dict(zip(objectives, t["values"]))
            store.finish(cid, EvalResult(cid, scores=scores, item_scores=t.get("item_scores", {}), worker="w0"),
                         list(t["values"]), seq)
        seq += 1
    for k, t in enumerate(running):
        store.add_candidate(len(trials) + k, [0.0], t["recipe"], seq)
        seq += 1
    return run_dir

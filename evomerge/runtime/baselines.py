"""Baselines of a multi-objective run: each parent model as it is, and the untuned merge (the
search space's start point), scored once on the run's tasks before the search.

A Pareto front means little without them: a merge is worth exporting when it beats its
parents on the trade-off. They are stored with the run (``meta["baselines"]``, not as trials,
so they neither use budget nor reach the searcher) and drawn by `evomerge pareto` as reference
points (not to be confused with the hypervolume's reference point).
"""

from __future__ import annotations

from typing import Any

from evomerge.runtime.pool import EvalJob
from evomerge.runtime.session import Session
from evomerge.runtime.store import RunStore

MODEL_BACKENDS = ("hf", "vllm")


def baseline_recipes(session: Session) -> dict[str, dict[str, Any]]:
    """Label -> recipe: every parent (base and sources) unchanged, then the untuned merge."""
    from evomerge.genome.base import short_names

    out: dict[str, dict[str, Any]] = {}
    models = session.experiment.models
    refs = [r for r in (models.base, *models.sources) if r]
    if session.spec.backend in MODEL_BACKENDS:
        for label, ref in zip(short_names(refs), refs):
            out[f"parent {label}"] = {"kind": "parameter", "method": "linear",
                                      "sources": [{"model": ref, "parameters": {"weight": 1.0}}]}
    try:
        out["untuned merge"] = session.space.recipe_dict(session.space.x0)
    except Exception:  # noqa: BLE001 - a start point without a recipe has no baseline
        pass
    return out


def score_baselines(store: RunStore, session: Session, pool: Any) -> dict[str, Any] | None:
    """Score the baselines once per run (multi-objective runs only) and store them; an
    interrupted scoring is simply redone on resume."""
    if len(session.scoring.objectives) < 2 or store.meta.get("baselines") is not None:
        return None
    recipes = baseline_recipes(session)
    labels = list(recipes)
    for i, label in enumerate(labels):
        pool.submit(EvalJob(-1 - i, recipes[label], session.experiment.resources.timeout_s))
    results: dict[str, Any] = {}
    idle = 0
    while len(results) < len(labels) and idle < 3600:   # an hour without any result: give up
        got = pool.wait(timeout=1.0)
        idle = 0 if got else idle + 1
        for r in got:
            if not 0 <= -1 - r.candidate_id < len(labels):
                continue
            label = labels[-1 - r.candidate_id]
            values = None if r.error else session.scoring.values(r.scores)
            results[label] = ({"error": r.error or "no score"} if values is None else
                              {"objectives": dict(zip((o.name for o in session.scoring.objectives), values)),
                               "scores": dict(r.scores)})
    store.update_meta(baselines={k: results.get(k, {"error": "no result"}) for k in labels})
    return results

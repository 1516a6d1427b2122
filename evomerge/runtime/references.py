"""Reference points scored beside a search: the parents, the untuned merges and the start point.

A winner's score means little alone: the question a user asks is whether the search beat what
they would have had without it. An experiment's ``references`` names what to compare with:
``parents`` (each source model as it is), ``untuned`` (task arithmetic, TIES and DARE-TIES over
the sources with every weight 1 and density 0.5, the defaults a user reaches for; needs a base),
``start`` (the search's start point) or a recipe file (named by its stem); a multi-objective run
that names none compares with ``parents`` and ``start`` (its Pareto plot marks them). The run
scores them once, before searching (they use no budget and never reach the searcher), with the run's own evaluator on the search's split, and stores each
result the moment it arrives (a resume skips those stored); the run's final summary and the
exported model card show the winner next to them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evomerge.evaluate.result import EvalResult
from evomerge.mergekit_config import load_any_recipe
from evomerge.runtime.pool import EvalJob

KINDS = ("parents", "untuned", "start")
UNTUNED = ("task_arithmetic", "ties", "dare_ties")


def _short(ref: str) -> str:
    return ref[4:] if ref.startswith("zoo:") else Path(ref).name


def reference_recipes(session: Any) -> dict[str, dict[str, Any]]:
    """Name -> recipe dict for every reference the experiment asks for, in its order."""
    exp, out = session.experiment, {}
    sources, base = list(exp.models.sources), exp.models.base
    entries = exp.references or (["parents", "start"] if len(exp.fitness.objectives) > 1 else [])
    for entry in entries:
        if entry == "parents":
            for ref in sources:
                out[f"parent {_short(ref)}"] = {"kind": "parameter", "method": "linear",
                                                "sources": [{"model": ref, "parameters": {"weight": 1.0}}]}
        elif entry == "untuned":
            for method in UNTUNED if base else ():
                params = {"weight": 1.0} if method == "task_arithmetic" else {"weight": 1.0, "density": 0.5}
                out[f"untuned {method}"] = {"kind": "parameter", "method": method, "base": base,
                                            "sources": [{"model": m, "parameters": dict(params)} for m in sources],
                                            "parameters": {"lambda": 1.0}, "seed": exp.seed}
        elif entry == "start":
            x0 = session.space.x0
            if exp.initial_recipe:
                x0 = session.space.from_recipe(load_any_recipe(exp.initial_recipe))
            out["start"] = session.space.recipe_dict(x0)
        else:
            out[Path(entry).stem] = load_any_recipe(entry).to_dict()
    return out


def score_references(store: Any, session: Any, pool: Any, echo: Any = None) -> None:
    """Score the references not stored yet (before the search; each stored when it arrives)."""
    todo = {n: r for n, r in reference_recipes(session).items() if n not in store.references()}
    if not todo:
        return
    names = list(todo)
    ids = {-1 - i: n for i, n in enumerate(names)}        # negative: never a candidate's id
    for cid, name in ids.items():
        pool.submit(EvalJob(cid, todo[name], session.experiment.resources.timeout_s))
    left = set(ids)
    while left:
        for result in pool.wait(timeout=1.0):
            if result.candidate_id not in left:
                continue
            left.discard(result.candidate_id)
            name = ids[result.candidate_id]
            payload = _payload(todo[name], result, session)
            store.save_reference(name, payload)
            if echo is not None:
                echo(f"reference {name}: " + (f"{payload['value']:.4f}" if payload["value"] is not None
                                               else f"failed ({payload['error']})"))


def _payload(recipe: dict[str, Any], result: EvalResult, session: Any) -> dict[str, Any]:
    values = None if result.error else session.scoring.values(result.scores)
    return {"recipe": recipe, "scores": dict(result.scores), "objectives":
            dict(zip((o.name for o in session.scoring.objectives), values or [])),
            "value": values[0] if values else None, "error": result.error,
            "items": {t: len(v) for t, v in result.item_scores.items()}}


def comparison_lines(store: Any) -> list[str]:
    """The run's best next to its references, on the search's split (first objective)."""
    refs = store.references()
    if not refs:
        return []
    info = store.info()
    name, direction = next(iter(info.objectives.items()))
    done = [t for t in store.trials() if t.state == "complete" and name in t.objectives]
    pick = max if direction == "maximize" else min
    split = (info.experiment.get("fitness") or {}).get("split", "validation")
    rows: list[tuple[str, float | None]] = []
    if done:
        best = pick(done, key=lambda t: (t.objectives[name], -t.number) if direction == "maximize"
                    else (t.objectives[name], t.number))
        rows.append((f"winner (candidate {best.number})", best.objectives[name]))
    rows += [(n, r.get("objectives", {}).get(name)) for n, r in refs.items()]
    width = max(len(n) for n, _ in rows)
    lines = [f"{name} on {split}, winner vs references:"]
    lines += [f"  {n:<{width}}  " + ("failed" if v is None else f"{v:.4f}") for n, v in rows]
    return lines


def climb_line(store: Any, limit: int = 8) -> str | None:
    """How the best value grew, in the order candidates finished: ``0.31 (#0) -> 0.45 (#14)``
    (the first objective; at most ``limit`` steps, the last ones)."""
    info = store.info()
    name, direction = next(iter(info.objectives.items()))
    done = sorted((t for t in store.trials() if t.state == "complete" and name in t.objectives),
                  key=lambda t: (t.finished is None, t.finished, t.number))
    steps, best = [], None
    for k, t in enumerate(done):
        v = t.objectives[name]
        if best is None or (v > best if direction == "maximize" else v < best):
            best = v
            steps.append(f"{v:.4f} (#{t.number}, evaluation {k + 1})")
    if not steps:
        return None
    shown = steps if len(steps) <= limit else ["..."] + steps[-limit:]
    return f"best {name} so far: " + " -> ".join(shown)

"""Export one trial of a run as a ready-to-use model folder.

The folder holds an HF checkpoint (sharded safetensors, config, tokenizer, generation config)
written by the merge engine, ``recipe.yaml`` (``evomerge merge recipe.yaml`` rebuilds the same
tensors bit for bit), ``mergekit.yaml`` whenever mergekit can express the merge (see
evomerge/mergekit_export.py; the card says in one line what it holds or why it is absent), and a
model card (README.md) with lineage and scores on the validation and test splits, re-scored
by the run's own Evaluator at export time (the held-out test split in full; each column says
how many items it scored). Data-flow and hybrid winners become plain
checkpoints with the evolved number of layers, path scales folded into the weights.

Everything is written into a temporary folder beside the target and renamed into place at the
end, so a failure (or Ctrl-C) leaves nothing behind; an existing target is replaced only
with ``force``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from evomerge.errors import EvomergeError
from evomerge.evaluate.task_refs import lm_eval_card_note
from evomerge.experiment import parse_experiment
from evomerge.genome.base import model_layers
from evomerge.mergekit_export import HEADER, export_config
from evomerge.recipe import DataflowRecipe, parse_recipe
from evomerge.report.card import CardFacts, model_card
from evomerge.runtime.inprocess import build_evaluator
from evomerge.runtime.pool import EvalJob
from evomerge.runtime.records import RunInfo, TrialRecord, best_trial
from evomerge.runtime.session import build_session
from evomerge.runtime.store import RunStore

SPLITS = ("validation", "test")


@dataclass
class Exported:
    path: Path
    trial: TrialRecord
    chosen_by: str
    scores: dict[str, dict[str, float]]   # split -> task -> score


def pick_trial(info: RunInfo, trials: list[TrialRecord], which: str, objective: str | None = None) -> tuple[TrialRecord, str]:
    """The trial to export and why it was chosen: a trial number, or ``best`` by ``objective``
    (default: the run's first objective; ties go to the earlier trial)."""
    if which != "best":
        try:
            number = int(which)
        except ValueError:
            raise EvomergeError(f"--trial: {which!r} is not a trial number or 'best'") from None
        trial = next((t for t in trials if t.number == number), None)
        if trial is None:
            raise EvomergeError(f"--trial: run {info.name} has no trial {number}")
        if trial.state != "complete":
            why = f" ({trial.error})" if trial.error else ""
            raise EvomergeError(f"--trial: trial {number} of run {info.name} is {trial.state}{why}; only completed trials export")
        return trial, f"trial {number} (picked by number)"
    if not info.objectives:
        raise EvomergeError(f"run {info.name}: stores no objectives to pick the best trial by")
    name = objective or next(iter(info.objectives))
    if name not in info.objectives:
        raise EvomergeError(f"--objective: {name!r} is not an objective of run {info.name} (have: {', '.join(info.objectives)})")
    direction = info.objectives[name]
    best = best_trial(trials, name, direction)
    if best is None:
        raise EvomergeError(f"run {info.name}: no completed trial has a value for {name!r} yet")
    scored = sum(t.state == "complete" and math.isfinite(t.objectives.get(name, math.nan)) for t in trials)
    return best, f"the best trial by `{name}` ({direction}) among {scored} completed"


def score_on_splits(info: RunInfo, recipe: dict[str, Any], splits=SPLITS,
                    test_limit: int | None = None) -> tuple[dict, dict, dict]:
    """Task scores, objective values and item counts of ``recipe`` per split, from the run's own
    evaluator settings (backend, tasks, options) with only the split changed, except that the
    held-out test split is scored in full (or on its first ``test_limit`` items), not on the
    run's ``limit``: the search split reproduces what the run stored, the test split is the
    honest estimate."""
    scored = score_many_on_splits(info, {"": recipe}, splits, test_limit)[""]
    if isinstance(scored, str):
        raise EvomergeError(scored)
    return scored


def score_many_on_splits(info: RunInfo, recipes: dict[str, dict[str, Any]], splits=SPLITS,
                         test_limit: int | None = None) -> dict[str, Any]:
    """``score_on_splits`` for several recipes, one evaluator per split: name -> (scores,
    objectives, item counts per split), or a one-line reason when a recipe failed on a split."""
    exp = parse_experiment(info.experiment, f"run {info.name}: stored experiment", Path.cwd())
    session = build_session(exp)
    out: dict[str, Any] = {name: ({}, {}, {}) for name in recipes}
    for split in splits:
        options = dict(session.spec.options)
        if split == "test":
            options.pop("limit", None)
            if test_limit:
                options["limit"] = test_limit
        evaluator = build_evaluator(replace(session.spec, split=split, options=options))
        for name, recipe in recipes.items():
            if isinstance(out[name], str):
                continue
            result = evaluator.evaluate(EvalJob(candidate_id=-1, recipe=recipe))
            if result.error:
                out[name] = f"export: scoring on the {split} split failed: {result.error}"
                continue
            scores, objectives, items = out[name]
            scores[split] = dict(result.scores)
            items[split] = {t: len(v) for t, v in result.item_scores.items()}
            values = session.scoring.values(result.scores) or []
            objectives[split] = dict(zip((o.name for o in session.scoring.objectives), values))
        close = getattr(evaluator, "close", None)
        if close:
            close()
    return out


def _layers(recipe: Any) -> tuple[int | None, list[int], list[str]]:
    """Output and source layer counts of a data-flow recipe, with what the card must say."""
    if not isinstance(recipe, DataflowRecipe):
        return None, [], []
    counts = [model_layers(src.model if src.model is not None else src.recipe.model_refs()[0]) for src in recipe.sources]
    scaled = [k for k, h in enumerate(recipe.layers) if h.scale != 1.0]
    notes = [f"Data-flow path of {len(recipe.layers)} layers exported as a plain checkpoint "
             f"(`num_hidden_layers: {len(recipe.layers)}`); it loads with any Llama-compatible runtime."]
    if scaled:
        notes.append(f"{len(scaled)} hop(s) of the path scale the hidden state (hops {', '.join(map(str, scaled[:12]))}"
                     f"{'…' if len(scaled) > 12 else ''}). The scales are folded into the output projections "
                     "(o_proj, down_proj) of that block and every later one; for a pre-norm model this is the "
                     "same function up to the RMSNorm epsilon, not bit-identical activations.")
    if any(s.recipe is not None for s in recipe.sources):
        notes.append("Hybrid: the inline parameter-space recipe among the sources is merged first, then routed.")
    return len(recipe.layers), counts, notes


def export_trial(run: str, out: str | Path, which: str = "best", objective: str | None = None,
                 force: bool = False, evaluate: bool = True, max_shard_bytes: int | None = None,
                 test_limit: int | None = None) -> Exported:
    """Export a trial of ``run`` (directory or store URL) into ``out``; see the module docstring."""
    from evomerge.engine import merge_to_disk
    from evomerge.engine.writer import atomic_output_dir

    store = RunStore.open(run, read_only=True)
    info, trials = store.info(), store.trials()
    trial, chosen_by = pick_trial(info, trials, which, objective)
    recipe = parse_recipe(trial.recipe, f"trial {trial.number} recipe")
    search_split = str((info.experiment.get("fitness") or {}).get("split", "validation"))
    facts = CardFacts(info=info, trial=trial, chosen_by=chosen_by, search_split=search_split,
                      finished=sum(t.state in ("complete", "failed") for t in trials))
    facts.num_layers, facts.source_layers, facts.notes = _layers(recipe)
    with atomic_output_dir(out, force) as tmp:
        merge_to_disk(recipe, tmp, force=True, recipe_file="recipe.yaml",
                      **({"max_shard_bytes": max_shard_bytes} if max_shard_bytes else {}))
        config, note = export_config(recipe)
        if config is not None:
            (tmp / "mergekit.yaml").write_text(HEADER + f"# {note.split(': ', 1)[1]}\n"
                                               + yaml.safe_dump(config, sort_keys=False))
        facts.notes.append(note if config is not None else f"{note} recipe.yaml is the exact description.")
        if evaluate:
            refs = store.references()
            scored = score_many_on_splits(info, {"": trial.recipe, **{n: r["recipe"] for n, r in refs.items()}},
                                          test_limit=test_limit)
            if isinstance(scored[""], str):
                raise EvomergeError(scored[""])
            facts.split_scores, facts.split_objectives, facts.split_items = scored.pop("")
            facts.references = {n: (refs[n].get("objectives", {}), None if isinstance(v, str) else v[1])
                                for n, v in scored.items()}
            limit = ((info.experiment.get("fitness") or {}).get("options") or {}).get("limit")
            if limit:
                facts.notes.append(f"The stored and validation scores use the run's fitness settings (the first "
                                   f"{limit} items); the test split is scored "
                                   + (f"on its first {test_limit} items." if test_limit else "in full."))
            tasks = (info.experiment.get("fitness") or {}).get("tasks", [])
            facts.notes += [lm_eval_card_note(ref, test_limit) for ref in tasks if isinstance(ref, dict)]
        facts.files = sorted(p.name for p in tmp.iterdir()) + ["README.md"]
        (tmp / "README.md").write_text(model_card(facts))
    return Exported(Path(out), trial, chosen_by, facts.split_scores)

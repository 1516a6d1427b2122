"""The model card (README.md) of an exported trial: lineage, scores, how to rebuild it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from evomerge.report.summary import recipe_summary
from evomerge.runtime.records import RunInfo, TrialRecord


@dataclass
class CardFacts:
    """Everything the card says beyond the recipe itself."""

    info: RunInfo
    trial: TrialRecord
    chosen_by: str                                   # e.g. "best math (maximize)" or "trial 12"
    finished: int                                    # evaluations finished when exported
    search_split: str                                # split the stored scores come from
    split_scores: dict[str, dict[str, float]] = field(default_factory=dict)   # split -> task -> score
    split_objectives: dict[str, dict[str, float]] = field(default_factory=dict)
    split_items: dict[str, dict[str, int]] = field(default_factory=dict)     # split -> task -> items scored
    num_layers: int | None = None
    source_layers: list[int] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # reference name -> (stored objectives on the search split, split -> objectives at export or None)
    references: dict[str, tuple[dict[str, float], dict[str, dict[str, float]] | None]] = field(default_factory=dict)


def _models(recipe: dict[str, Any]) -> list[str]:
    out = []
    for src in recipe.get("sources") or []:
        if "recipe" in src:
            out += [m for m in _models(src["recipe"]) if m not in out]
            base = src["recipe"].get("base")
            if base and base not in out:
                out.append(base)
        elif src.get("model") not in out:
            out.append(src.get("model"))
    return [m for m in out if m]


def _kind(recipe: dict[str, Any]) -> str:
    if recipe.get("kind", "parameter") != "dataflow":
        return f"{recipe.get('method')} (parameter space)"
    hybrid = any("recipe" in s for s in recipe.get("sources") or [])
    return "hybrid: parameter-space merge, then data-flow layer path" if hybrid else "data-flow layer path"


def _fmt(v: float | None) -> str:
    return "–" if v is None else f"{v:.4f}"


def model_card(facts: CardFacts) -> str:
    """Markdown with a small YAML front matter (tags, base models) that hubs understand."""
    info, trial, recipe = facts.info, facts.trial, facts.trial.recipe
    models = _models(recipe)
    base = recipe.get("base") or next((s["recipe"].get("base") for s in recipe.get("sources") or []
                                       if "recipe" in s and s["recipe"].get("base")), None)
    front = {"library_name": "transformers", "tags": ["evomerge", "merge"], "base_model": models}
    lines = ["---", yaml.safe_dump(front, sort_keys=False).strip(), "---", "",
             f"# {info.name} — trial {trial.number}", "",
             f"A merged model found by evomerge's `{info.searcher}` search in run `{info.name}`, "
             f"chosen as {facts.chosen_by}.", "",
             "## Lineage", "", "| | |", "|---|---|",
             f"| sources | {', '.join(f'`{m}`' for m in models)} |",
             f"| base | {f'`{base}`' if base else '(none)'} |",
             f"| method | {_kind(recipe)} |",
             f"| recipe | `{recipe_summary(recipe)}` |",
             f"| searcher | {info.searcher} |",
             f"| budget | {_budget(info)} ({facts.finished} finished at export) |",
             f"| run | `{info.name}`" + (f", started {info.started:%Y-%m-%d %H:%M}" if info.started else "") + " |",
             f"| trial | {trial.number} (seed {trial.seed if trial.seed is not None else recipe.get('seed', 0)}) |"]
    if facts.num_layers is not None:
        lines.append(f"| layers | {facts.num_layers} decoder layers (sources: {', '.join(map(str, facts.source_layers))}) |")
    lines += ["", "## Scores", ""]
    lines += _score_table(facts)
    if facts.references:
        lines += ["", "## Compared with", ""] + _reference_table(facts)
    if facts.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in facts.notes]
    lines += ["", "## Files", "", *[f"- `{f}`" for f in facts.files], "",
              "Rebuild the weights bit for bit from the sources: `evomerge merge recipe.yaml --out DIR`.", "",
              "## Recipe", "", "```yaml", yaml.safe_dump(recipe, sort_keys=False).strip(), "```", ""]
    return "\n".join(lines)


def _items(counts: dict[str, int]) -> str:
    """", 1995 items" (", 40/200 items" when tasks differ); empty when unknown."""
    if not counts:
        return ""
    values = list(dict.fromkeys(counts.values()))
    return f", {values[0]} items" if len(values) == 1 else f", {'/'.join(map(str, counts.values()))} items"


def _reference_table(facts: CardFacts) -> list[str]:
    """This model next to the run's references (parents, untuned merges, start point) on the
    first objective: as stored during the search and re-scored on each split at export."""
    name = next(iter(facts.info.objectives), None) or next(iter(facts.trial.objectives), "score")
    splits = list(facts.split_objectives)
    head = [f"stored ({facts.search_split}, during search)"] + [f"{s} (at export)" for s in splits]
    out = [f"Objective `{name}`. References are scored by the run with the same evaluator settings.", "",
           "| | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
    rows = [(f"**this model** (trial {facts.trial.number})", facts.trial.objectives, facts.split_objectives)]
    rows += [(ref, stored, at_export or {}) for ref, (stored, at_export) in facts.references.items()]
    for label, stored, by_split in rows:
        cells = [_fmt(stored.get(name))] + [_fmt(by_split.get(s, {}).get(name)) for s in splits]
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    return out


def _score_table(facts: CardFacts) -> list[str]:
    splits = list(facts.split_scores)
    tasks = list(dict.fromkeys([*facts.trial.scores, *(t for s in splits for t in facts.split_scores[s])]))
    objectives = list(dict.fromkeys([*facts.trial.objectives, *(o for s in splits for o in facts.split_objectives.get(s, {}))]))
    stored_items = {t: len(v) for t, v in facts.trial.item_scores.items()}
    head = [f"stored ({facts.search_split}, during search{_items(stored_items)})"] + [
        f"{s} (at export{_items(facts.split_items.get(s, {}))})" for s in splits]
    out = ["| | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
    for o in objectives:
        direction = facts.info.objectives.get(o, "maximize")
        cells = [_fmt(facts.trial.objectives.get(o))] + [_fmt(facts.split_objectives.get(s, {}).get(o)) for s in splits]
        out.append(f"| objective **{o}** ({direction}) | " + " | ".join(cells) + " |")
    for t in tasks:
        cells = [_fmt(facts.trial.scores.get(t))] + [_fmt(facts.split_scores[s].get(t)) for s in splits]
        out.append(f"| task `{t}` | " + " | ".join(cells) + " |")
    if not splits:
        out += ["", "Not re-scored at export (`--no-eval`)."]
    return out


def _budget(info: Any) -> str:
    """The run's budget in words: evaluations, scored items (racing), or both."""
    parts = [f"{info.budget} evaluations" if info.budget else "",
             f"{info.budget_items} scored items" if info.budget_items else ""]
    return " or ".join(p for p in parts if p) or "open"

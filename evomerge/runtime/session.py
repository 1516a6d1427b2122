"""Everything a run needs, built from a validated experiment before anything is written:
the search space, the searcher, the evaluator spec and how results become objective values."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from evomerge.evaluate.backend import BACKENDS, check_scores_candidates
from evomerge.evaluate.result import EvalResult
from evomerge.evaluate.task_refs import task_key
from evomerge.experiment import Experiment, Objective
from evomerge.genome import Models, load_space
from evomerge.mergekit_config import load_any_recipe
from evomerge.runtime.pool import EvaluatorSpec
from evomerge.search import SpaceInfo, make_searcher
from evomerge.search.base import Outcome


@dataclass
class Scoring:
    """Turns an evaluation result into objective values (natural direction) and a searcher Outcome."""

    objectives: list[Objective]
    tasks: list[str]                      # task keys, the fixed order of per-item scores

    def values(self, scores: dict[str, float]) -> list[float] | None:
        try:
            return [float(o.value(scores)) for o in self.objectives]
        except KeyError:
            return None

    def outcome(self, scores: dict[str, float], item_scores: dict[str, list[float]], error: str | None):
        """The searcher's view: every objective maximized, items of all tasks concatenated."""
        vals = None if error else self.values(scores)
        if vals is None:
            missing = [t for t in self.tasks if t not in scores]
            return Outcome.failure(error or f"no score for task(s) {', '.join(missing)}")
        signed = tuple(v if o.direction == "maximize" else -v for v, o in zip(vals, self.objectives))
        items = [float(v) for t in self.tasks for v in item_scores.get(t, [])]
        return Outcome(values=signed, item_scores=np.asarray(items) if items else None, error=None)

    def of_result(self, r: EvalResult):
        return self.outcome(r.scores, r.item_scores, r.error)


@dataclass
class Session:
    experiment: Experiment
    space: Any                  # evomerge.genome.SearchSpace
    searcher: Any               # evomerge.search.Searcher
    spec: EvaluatorSpec
    scoring: Scoring


def build_session(exp: Experiment, workers: int | None = None) -> Session:
    """Space, searcher and evaluator spec for ``exp``; EvomergeError (one line) on bad input."""
    models = Models(sources=tuple(exp.models.sources), base=exp.models.base)
    space = load_space(exp.search_space, models, where=exp._space_where)
    x0, initial = space.x0, ()
    if exp.initial_recipe:
        x0 = space.from_recipe(_load_initial(exp.initial_recipe))
        initial = (x0,)
    workers = workers or exp.workers
    info = SpaceInfo(lower=space.lower, upper=space.upper, x0=x0, initial=initial,
                     n_objectives=len(exp.fitness.objectives), workers=workers)
    searcher = make_searcher(exp.searcher.name, info, exp.searcher.options, exp.seed)
    refs = tuple(r for r in (exp.models.base, *exp.models.sources) if r)
    options = {**exp.fitness.options, "seed": exp.seed, "workers": workers, "base": exp.models.base}
    spec = EvaluatorSpec(sources=refs, tasks=tuple(exp.fitness.tasks), split=exp.fitness.split,
                         backend=exp.backend, options=options)
    if exp.backend in BACKENDS:  # the backend, models, device and memory, before anything is written
        from evomerge.evaluate.loading import preflight

        check_scores_candidates(exp.backend)
        preflight(refs, options)
    scoring = Scoring(list(exp.fitness.objectives), [task_key(t) for t in exp.fitness.tasks])
    return Session(exp, space, searcher, spec, scoring)


def _load_initial(path: str) -> Any:
    """Our recipe YAML or a mergekit config, whichever the file is."""
    return load_any_recipe(path)

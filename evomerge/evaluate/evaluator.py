"""Score candidates: an ``Evaluator`` built from an ``EvaluatorSpec`` turns an ``EvalJob``
(a recipe as a dict) into an ``EvalResult`` (per-task aggregates, per-item scores, timings).

Sources are loaded once and one model is allocated (by the backend's ``from_spec``); each job's
weights are put in place by ``backend.load(recipe)`` (the hf backend materializes in place with
the engine's ``materialize_into``; vllm reloads weights inside its engine). Failures are data: invalid recipes,
NaN/inf weights and exceptions come back as ``EvalResult(error=...)``, never as a raise.
"""

from __future__ import annotations

import socket
import time
from typing import Any

from evomerge.evaluate.backend import backend_class
from evomerge.evaluate.result import EvalResult
from evomerge.evaluate.task_loading import load_task_ref
from evomerge.evaluate.tasks import TaskResult
from evomerge.evaluate.result import EvalJob, EvaluatorSpec
from evomerge.recipe import parse_recipe


class Evaluator:
    """Resident sources + one model + the spec's tasks, scoring one job at a time."""

    def __init__(self, spec: EvaluatorSpec) -> None:
        self.spec = spec
        self.tasks = [load_task_ref(t, f"fitness.tasks[{i}]") for i, t in enumerate(spec.tasks)]
        for task in self.tasks:
            task.items(spec.split)  # read the data now: a missing file fails at start, not per job
        self.backend = backend_class(spec.backend).from_spec(spec)
        self.worker = f"{socket.gethostname()}:{spec.backend}"
        self.limit = spec.options.get("limit")

    def score(self, items: tuple[int, int] | None = None) -> dict[str, TaskResult]:
        """Score whatever weights the backend holds now on every task (on items [a, b) of each
        split when given: a rung of a race, evomerge/runtime/racing.py)."""
        which = slice(*items) if items is not None else self.limit
        return {t.name: t.evaluate(self.backend, self.spec.split, which) for t in self.tasks}

    def evaluate(self, job: EvalJob) -> EvalResult:
        """Materialize the job's recipe, score it; errors become a failed EvalResult."""
        result = EvalResult(candidate_id=job.candidate_id, worker=self.worker)
        t0 = time.perf_counter()
        try:
            recipe = parse_recipe(job.recipe, f"candidate {job.candidate_id}")
            phases = self.backend.load(recipe) or {}
            result.timings.update(phases or {"materialize": time.perf_counter() - t0})
            bad = self.backend.nonfinite_parameter()
            if bad is not None:
                result.error = f"non-finite weights (NaN/inf) in {bad}"
                return result
            t1 = time.perf_counter()
            for name, task_result in self.score(job.items).items():
                result.scores[name] = task_result.score
                result.item_scores[name] = task_result.item_scores
            result.timings["score"] = time.perf_counter() - t1
        except Exception as err:  # noqa: BLE001 - failures are data for the search loop
            result.scores, result.item_scores = {}, {}
            result.error = f"{type(err).__name__}: {err}".splitlines()[0][:500]
        result.timings["total"] = time.perf_counter() - t0
        return result

    def close(self) -> None:
        self.backend.close()


def evaluate_model(backend: Any, tasks: list[Any], split: str = "test",
                   limit: int | None = None) -> dict[str, TaskResult]:
    """Score one already-loaded backend on task references (native names or lm-eval mappings)."""
    return {t.name: t.evaluate(backend, split, limit) for t in (load_task_ref(r) for r in tasks)}

"""A stand-in evaluator that takes a fixed time and scores recipes analytically.

For dry runs of a pool or cluster (``backend: evomerge.runtime.simulated:SimulatedEvaluator``)
and for measuring the runtime itself: with evaluations of known length, any gap is overhead.
Every number in the recipe is one item, scored ``-(v - target)^2``. ``options``: ``sleep``
seconds per evaluation (default 0), ``target`` (default 0.7), ``refuse_start_if`` (a path:
the evaluator refuses to start while it exists, a drill for replacement workers that cannot
start). A recipe may carry a
``simulate`` mapping that overrides the behaviour for that candidate, for fault drills:
``sleep``, ``raise`` (message of an exception to raise), ``exit`` (kill the worker process).
"""

from __future__ import annotations

import os
import time
from typing import Any

from evomerge.evaluate.result import EvalResult


def recipe_numbers(node: Any) -> list[float]:
    """All numbers in a recipe, depth first in key order (bools and the simulate section skipped)."""
    if isinstance(node, dict):
        return [v for k in sorted(node) if k != "simulate" for v in recipe_numbers(node[k])]
    if isinstance(node, (list, tuple)):
        return [v for item in node for v in recipe_numbers(item)]
    if isinstance(node, (int, float)) and not isinstance(node, bool):
        return [float(node)]
    return []


class SimulatedEvaluator:
    def __init__(self, spec: Any) -> None:
        from evomerge.evaluate.task_refs import task_key

        self.tasks = [task_key(t) for t in spec.tasks] or ["simulated"]   # the keys the run scores by
        self.sleep = float(spec.options.get("sleep", 0.0))
        self.target = float(spec.options.get("target", 0.7))
        flag = spec.options.get("refuse_start_if")
        if flag and os.path.exists(flag):
            raise RuntimeError(f"refusing to start: {flag} exists")

    def evaluate(self, job: Any) -> EvalResult:
        sim = job.recipe.get("simulate", {})
        if sim.get("exit"):
            os._exit(1)
        start = time.perf_counter()
        time.sleep(float(sim.get("sleep", self.sleep)))
        if "raise" in sim:
            raise RuntimeError(str(sim["raise"]))
        items = [-(v - self.target) ** 2 for v in recipe_numbers(job.recipe)] or [0.0]
        score = sum(items) / len(items)
        return EvalResult(job.candidate_id, scores={t: score for t in self.tasks},
                          item_scores={t: list(items) for t in self.tasks},
                          timings={"score": time.perf_counter() - start})

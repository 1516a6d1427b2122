"""Scores ``kind: weights`` recipes (nets evolved from scratch) with the torch backend.

Used as ``backend: evomerge.evaluate.weights_evaluator:WeightsEvaluator``; the tasks (e.g.
``digits``) are ordinary classify tasks scored by evomerge.evaluate.tasks.
"""

from __future__ import annotations

import socket
import time

from evomerge.evaluate.result import EvalResult
from evomerge.evaluate.result import EvalJob, EvaluatorSpec
from evomerge.evaluate.tasks import load_task


class WeightsEvaluator:
    def __init__(self, spec: EvaluatorSpec) -> None:
        self.spec = spec
        self.tasks = [load_task(t) for t in spec.tasks]
        for task in self.tasks:
            task.items(spec.split)
        self.limit = spec.options.get("limit")
        self.worker = f"{socket.gethostname()}:weights"

    def evaluate(self, job: EvalJob) -> EvalResult:
        from evomerge.evaluate.torch_backend import DigitsMLP, TorchBackend

        t0 = time.perf_counter()
        r = job.recipe
        if r.get("kind") != "weights" or r.get("net") != "digits_mlp":
            return EvalResult(job.candidate_id, worker=self.worker, error="not a digits_mlp weights recipe")
        backend = TorchBackend(DigitsMLP.from_flat(r["weights"], hidden=int(r["hidden"])))
        result = EvalResult(job.candidate_id, worker=self.worker)
        for task in self.tasks:
            tr = task.evaluate(backend, self.spec.split, self.limit)
            result.scores[tr.name] = tr.score
            result.item_scores[tr.name] = tr.item_scores
        result.timings["score"] = time.perf_counter() - t0
        return result

    def close(self) -> None:
        """Nothing to release (a net is built per job)."""

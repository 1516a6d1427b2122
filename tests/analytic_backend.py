"""A cheap, deterministic evaluator for runtime tests: scores a recipe's numbers analytically.

Used as ``backend: analytic_backend:SphereEvaluator`` (tests/ on PYTHONPATH). Each weight and
density in the recipe is one "item" scored -(v - 0.7)^2, so the best recipe has every number at
0.7. Options (from the experiment's fitness.options): ``sleep`` seconds per evaluation,
``fail_every`` k to fail every k-th candidate (failures are data).
"""

from __future__ import annotations

import time

from evomerge.evaluate.result import EvalResult


def numbers(recipe: dict) -> list[float]:
    out = []
    for src in recipe.get("sources", []):
        for key in sorted(src.get("parameters", {})):
            v = src["parameters"][key]
            out += v if isinstance(v, list) else [v]
    return [float(v) for v in out]


class SphereEvaluator:
    def __init__(self, spec) -> None:
        self.sleep = float(spec.options.get("sleep", 0.0))
        self.fail_every = int(spec.options.get("fail_every", 0))
        self.tasks = list(spec.tasks)

    def evaluate(self, job) -> EvalResult:
        time.sleep(self.sleep)
        if self.fail_every and job.candidate_id % self.fail_every == self.fail_every - 1:
            raise RuntimeError(f"synthetic failure of candidate {job.candidate_id}")
        items = [-(v - 0.7) ** 2 for v in numbers(job.recipe)]
        score = sum(items) / len(items)
        return EvalResult(job.candidate_id, scores={t: score for t in self.tasks},
                          item_scores={t: items for t in self.tasks}, timings={"score": self.sleep})


class ThreadsEvaluator:
    """Scores every candidate with the torch thread count it ran under (loads torch, as the
    real backends do), for the thread-setting tests."""

    def __init__(self, spec) -> None:
        import torch

        self.torch, self.tasks = torch, list(spec.tasks)

    def evaluate(self, job) -> EvalResult:
        n = float(self.torch.get_num_threads())
        return EvalResult(job.candidate_id, scores={t: n for t in self.tasks}, item_scores={t: [n] for t in self.tasks})


class NoisySphereEvaluator:
    """A noisy sphere with known item-level noise, for racing: item j of a candidate scores 1
    with probability f(x) = exp(-|x - 0.7|^2 / 0.5) (x: the recipe's numbers), drawn from a
    hash of (x, j), so each candidate's items are fixed and its full-split mean estimates f.
    ``items`` items per split (option, default 256); honours a job's item slice."""

    def __init__(self, spec) -> None:
        self.n = int(spec.options.get("items", 256))
        self.tasks = list(spec.tasks)
        self.jobs: list[tuple[int, tuple | None]] = []       # (candidate, items) of every job

    @staticmethod
    def truth(x) -> float:
        import math

        return math.exp(-sum((v - 0.7) ** 2 for v in x) / 0.5)

    def evaluate(self, job) -> EvalResult:
        import hashlib

        import numpy as np

        self.jobs.append((job.candidate_id, job.items))
        x = numbers(job.recipe)
        f = self.truth(x)
        a, b = job.items if job.items is not None else (0, self.n)
        key = int.from_bytes(hashlib.sha256(np.asarray(x, dtype=np.float64).tobytes()).digest()[:8], "little")
        u = np.random.default_rng(key).random(self.n)[a:min(b, self.n)]
        items = [float(v < f) for v in u]
        return EvalResult(job.candidate_id, scores={t: sum(items) / max(len(items), 1) for t in self.tasks},
                          item_scores={t: list(items) for t in self.tasks})

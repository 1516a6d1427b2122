"""Stand-in evaluators that score recipes analytically: dry runs, runtime measurements, tests.

``backend: evomerge.runtime.simulated:SimulatedEvaluator`` dry-runs a pool or cluster and measures
the runtime itself (with evaluations of known length, any gap is overhead). The recipe's numbers
(each source's parameters, keys in order, lists and per-block mappings flattened) are its items,
each scored ``-(v - target)^2``, so the best recipe has every number at ``target``.

``options`` (the experiment's fitness.options): ``target`` (default 0.7); ``fail_every`` k to fail
every k-th candidate (failures are data); ``refuse_start_if`` (a path: the evaluator refuses to
start while it exists, a drill for replacement workers that cannot start); ``closed`` (a file
``close`` appends its process id to: a test sees that its pool closed it); and the behaviour of
each evaluation, which a recipe's ``simulate`` mapping overrides for that candidate (fault drills
and tests that stage a worker's state without sleeping on the clock):

- ``sleep``: seconds the evaluation takes (default 0);
- ``until``: a path; the sleep ends early once it exists (a test releases a held job);
- ``started``: a path created when the evaluation starts (a test waits for it to be running);
- ``raise``: the message of an exception to raise; ``exit``: kill the worker process.

``NoisySimulatedEvaluator`` scores items with known binomial noise instead, for racing.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from pathlib import Path
from typing import Any

from evomerge.evaluate.result import EvalJob, EvalResult, EvaluatorSpec
from evomerge.evaluate.task_refs import task_key


def recipe_numbers(recipe: dict[str, Any]) -> list[float]:
    """The numbers a search sets in a recipe: each source's parameters, keys in order."""
    out: list[float] = []

    def walk(v: Any) -> None:
        if isinstance(v, dict):
            for key in sorted(v):
                walk(v[key])
        elif isinstance(v, (list, tuple)):
            for item in v:
                walk(item)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append(float(v))

    for src in recipe.get("sources", []):
        walk(src.get("parameters", {}))
    return out


class SimulatedEvaluator:
    """The sphere (see the module docstring); behaviour per evaluation from options or ``simulate``."""

    def __init__(self, spec: EvaluatorSpec) -> None:
        self.options = dict(spec.options)
        self.tasks = [task_key(t) for t in spec.tasks] or ["simulated"]   # the keys the run scores by
        self.target = float(self.options.get("target", 0.7))
        self.fail_every = int(self.options.get("fail_every", 0))
        flag = self.options.get("refuse_start_if")
        if flag and os.path.exists(flag):
            raise RuntimeError(f"refusing to start: {flag} exists")

    def evaluate(self, job: EvalJob) -> EvalResult:
        sim = {**self.options, **job.recipe.get("simulate", {})}
        start = time.perf_counter()
        if sim.get("started"):
            Path(sim["started"]).touch()
        if sim.get("exit"):
            os._exit(1)
        _sleep(float(sim.get("sleep", 0.0)), sim.get("until"))
        if "raise" in sim:
            raise RuntimeError(str(sim["raise"]))
        if self.fail_every and job.candidate_id % self.fail_every == self.fail_every - 1:
            raise RuntimeError(f"synthetic failure of candidate {job.candidate_id}")
        items = self.items(job)
        return EvalResult(job.candidate_id, scores={t: sum(items) / max(len(items), 1) for t in self.tasks},
                          item_scores={t: list(items) for t in self.tasks},
                          timings={"score": time.perf_counter() - start})

    def items(self, job: EvalJob) -> list[float]:
        return [-(v - self.target) ** 2 for v in recipe_numbers(job.recipe)] or [0.0]

    def close(self) -> None:
        if self.options.get("closed"):
            with open(self.options["closed"], "a") as f:
                f.write(f"{os.getpid()}\n")


class NoisySimulatedEvaluator(SimulatedEvaluator):
    """Known item-level noise, for racing: item j of a candidate scores 1 with probability
    ``truth(x) = exp(-|x - target|^2 / 0.5)`` (x: the recipe's numbers), drawn from a hash of
    (x, j), so each candidate's items are fixed and its full-split mean estimates ``truth``.
    ``items`` items per split (option, default 256); honours a job's item slice and records
    every job it ran as (candidate, items)."""

    def __init__(self, spec: EvaluatorSpec) -> None:
        super().__init__(spec)
        self.n = int(self.options.get("items", 256))
        self.jobs: list[tuple[int, tuple[int, int] | None]] = []

    @staticmethod
    def truth(x: list[float], target: float = 0.7) -> float:
        return math.exp(-sum((v - target) ** 2 for v in x) / 0.5)

    def items(self, job: EvalJob) -> list[float]:
        import numpy as np

        self.jobs.append((job.candidate_id, job.items))
        x = recipe_numbers(job.recipe)
        a, b = job.items if job.items is not None else (0, self.n)
        key = int.from_bytes(hashlib.sha256(np.asarray(x, dtype=np.float64).tobytes()).digest()[:8], "little")
        u = np.random.default_rng(key).random(self.n)[a:min(b, self.n)]
        f = self.truth(x, self.target)
        return [float(v < f) for v in u]


def _sleep(seconds: float, until: str | None) -> None:
    """Sleep `seconds`, or less once the path `until` exists."""
    end = time.perf_counter() + seconds
    while (left := end - time.perf_counter()) > 0:
        if until is not None and os.path.exists(until):
            return
        time.sleep(left if until is None else min(left, 0.01))

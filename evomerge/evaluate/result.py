"""The evaluation contract: a job to score (``EvalJob``), what builds an evaluator
(``EvaluatorSpec``), the outcome (``EvalResult``), and the ``Evaluator`` protocol every
evaluation pool drives. Every layer above evaluation consumes these."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class EvalResult:
    """Scores of one candidate, or the reason it failed.

    ``scores`` holds one aggregate per task (higher is better unless the task says otherwise);
    ``item_scores`` the per-item scores each aggregate came from (M2N2 and MAP need them);
    ``timings`` seconds spent per phase (e.g. ``materialize``, ``swap``, ``score``).
    A failed candidate has ``error`` set (NaN weights, out of memory, timeout, exception, ...)
    and may have empty scores; failures are data, stored like successes.
    """

    candidate_id: int
    scores: dict[str, float] = field(default_factory=dict)
    item_scores: dict[str, list[float]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    worker: str = ""
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None


@dataclass(frozen=True)
class EvalJob:
    """One candidate to score: its id in the store and its recipe as a plain dict; ``items``
    [a, b) restricts scoring to those items of each task's split (a rung of a race)."""

    candidate_id: int
    recipe: dict[str, Any]
    timeout_s: float | None = None
    items: tuple[int, int] | None = None


@dataclass(frozen=True)
class EvaluatorSpec:
    """Everything a worker needs to build an evaluator: picklable, no tensors.

    ``sources`` are the model references the recipes draw from (loaded once, kept resident);
    ``tasks`` the fitness task names or paths with the split to score on; ``backend`` one of
    ``hf``, ``torch``, ``vllm``; ``options`` backend-specific settings (batch size, device...);
    ``threads`` the torch threads one evaluation uses (None: leave the process's setting).
    """

    sources: tuple[str, ...]
    tasks: tuple[str, ...]
    split: str = "validation"
    backend: str = "hf"
    options: dict[str, Any] = field(default_factory=dict)
    threads: int | None = None


class Evaluator(Protocol):
    """Scores one job at a time (built once per worker from an EvaluatorSpec); ``close``
    releases what it holds (an inference engine, temporary files) when its pool closes."""

    def evaluate(self, job: EvalJob) -> EvalResult: ...

    def close(self) -> None: ...

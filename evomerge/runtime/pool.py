"""How the search loop hands candidates to evaluators, independent of where they run.

The loop only sees this protocol. ``InProcessPool`` evaluates in the driver process; the Ray
pool keeps long-lived actors with resident sources. Both build their evaluators from the same
picklable ``EvaluatorSpec`` so a Ray worker can construct one locally.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from evomerge.evaluate.result import EvalResult


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


class EvaluationPool(Protocol):
    """A set of evaluators that score candidates concurrently."""

    @property
    def capacity(self) -> int:
        """How many jobs it can run at once (the loop keeps that many in flight)."""
        ...

    def submit(self, job: EvalJob) -> None:
        """Start scoring a job; returns at once."""
        ...

    def wait(self, timeout: float | None = None) -> list[EvalResult]:
        """Block until at least one job finished (or timeout) and return all finished results."""
        ...

    def close(self) -> None:
        """Release workers and resources."""
        ...

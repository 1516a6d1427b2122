"""How the search loop hands candidates to evaluators, independent of where they run.

The loop only sees this protocol. ``InProcessPool`` evaluates in the driver process; the Ray
pool keeps long-lived actors with resident sources. Both build their evaluators from the same
picklable ``EvaluatorSpec`` so a Ray worker can construct one locally (the job, spec and result
types are the evaluation contract: they live in ``evaluate.result``).
"""

from __future__ import annotations

from typing import Protocol

from evomerge.evaluate.result import EvalJob, EvalResult, EvaluatorSpec

__all__ = ["EvalJob", "EvalResult", "EvaluationPool", "EvaluatorSpec"]  # the evaluation contract, re-exported


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
        """Release workers and resources (each idle evaluator's ``close``)."""
        ...

    def utilization(self) -> float | None:
        """Fraction of the workers' time spent evaluating so far (None: not measured), for the
        progress bar."""
        ...

    def summary(self) -> str | None:
        """One line for the end of a run about the workers (None: nothing to add)."""
        ...

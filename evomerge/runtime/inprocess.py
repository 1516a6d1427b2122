"""Evaluate candidates in the driver process, one at a time: the pool for laptops and tests.

``build_evaluator(spec)`` is the one place that turns an ``EvaluatorSpec`` into an evaluator, so
the Ray pool's actors build theirs the same way. A backend named ``module:Class`` loads that
class (how tests plug in cheap analytic evaluators); the others go to evomerge.evaluate.
"""

from __future__ import annotations

import importlib
import os
import socket
import time
import traceback
from collections import deque
from typing import Any

from evomerge.errors import ConfigError
from evomerge.evaluate.result import EvalResult
from evomerge.runtime.pool import EvalJob, EvaluatorSpec


def build_evaluator(spec: EvaluatorSpec) -> Any:
    """An object with ``evaluate(job: EvalJob) -> EvalResult`` for this spec."""
    if ":" in spec.backend:
        module, _, cls = spec.backend.partition(":")
        try:
            return getattr(importlib.import_module(module), cls)(spec)
        except (ImportError, AttributeError) as err:
            raise ConfigError(f"backend: cannot load {spec.backend} ({err})") from None
    from evomerge.evaluate.evaluator import Evaluator

    return Evaluator(spec)


def safe_evaluate(evaluator: Any, job: EvalJob, worker: str) -> EvalResult:
    """Run one job; any exception becomes a failed result (failures are data), Ctrl-C propagates."""
    start = time.perf_counter()
    try:
        result = evaluator.evaluate(job)
    except MemoryError:
        result = EvalResult(candidate_id=job.candidate_id, error="out of memory")
    except Exception as err:  # noqa: BLE001 - a candidate's failure must not end the run
        tb = traceback.extract_tb(err.__traceback__)
        where = f" at {tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno}" if tb else ""
        result = EvalResult(candidate_id=job.candidate_id, error=f"{type(err).__name__}: {err}{where}")
    result.candidate_id = job.candidate_id
    result.worker = result.worker or worker
    result.timings.setdefault("total", time.perf_counter() - start)
    return result


class InProcessPool:
    """Capacity 1: ``submit`` queues, ``wait`` evaluates the next job in this process."""

    def __init__(self, spec: EvaluatorSpec, evaluator: Any | None = None) -> None:
        self.spec = spec
        self._evaluator = evaluator if evaluator is not None else build_evaluator(spec)
        self._queue: deque[EvalJob] = deque()
        self.worker = f"{socket.gethostname()}:{os.getpid()}"

    @property
    def capacity(self) -> int:
        return 1

    def submit(self, job: EvalJob) -> None:
        self._queue.append(job)

    def wait(self, timeout: float | None = None) -> list[EvalResult]:
        if not self._queue:
            return []
        return [safe_evaluate(self._evaluator, self._queue.popleft(), self.worker)]

    def close(self) -> None:
        self._queue.clear()
        close = getattr(self._evaluator, "close", None)
        if callable(close):
            close()

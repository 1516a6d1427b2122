"""Evaluate candidates in the driver process, one at a time: the pool for laptops and tests.

``build_evaluator(spec)`` is the one place that turns an ``EvaluatorSpec`` into an evaluator, so
the Ray pool's actors build theirs the same way. A backend named ``module:Class`` loads that
class, which implements the ``Evaluator`` protocol (``evaluate`` and ``close``; e.g. the analytic
stand-ins of evomerge.runtime.simulated); the others go to evomerge.evaluate.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import socket
import threading
import time
import traceback
from collections import deque
from collections.abc import Iterator

from evomerge.errors import ConfigError
from evomerge.evaluate.result import EvalJob, EvalResult, Evaluator, EvaluatorSpec
from evomerge.runtime.threads import set_torch_threads


def build_evaluator(spec: EvaluatorSpec) -> Evaluator:
    """The evaluator for this spec."""
    if ":" in spec.backend:
        module, _, cls = spec.backend.partition(":")
        try:
            return getattr(importlib.import_module(module), cls)(spec)
        except (ImportError, AttributeError) as err:
            raise ConfigError(f"backend: cannot load {spec.backend} ({err})") from None
    from evomerge.evaluate.evaluator import Evaluator as TaskEvaluator

    return TaskEvaluator(spec)


class _Deadline(Exception):
    """Raised into the evaluation by SIGALRM when a job runs past its timeout."""


@contextlib.contextmanager
def deadline(seconds: float | None) -> Iterator[None]:
    """Interrupt the body after `seconds` with _Deadline (SIGALRM; main thread on POSIX only,
    elsewhere a no-op). Python code stops at once; a long C call stops when it returns."""
    usable = (seconds is not None and seconds > 0 and hasattr(signal, "setitimer")
              and threading.current_thread() is threading.main_thread())
    if not usable:
        yield
        return

    def fire(signum, frame):
        raise _Deadline()

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def safe_evaluate(evaluator: Evaluator, job: EvalJob, worker: str, timeout_s: float | None = None) -> EvalResult:
    """Run one job; any exception becomes a failed result (failures are data), Ctrl-C propagates.
    With `timeout_s`, a job still running then is interrupted and failed ("timeout after Ns")."""
    start = time.perf_counter()
    try:
        with deadline(timeout_s):
            result = evaluator.evaluate(job)
    except _Deadline:
        result = EvalResult(candidate_id=job.candidate_id, error=f"timeout after {timeout_s:g}s")
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
    """Capacity 1: ``submit`` queues, ``wait`` evaluates the next job in this process (a job's
    ``timeout_s`` is enforced with SIGALRM when the loop runs in the main thread). The spec's
    ``threads`` apply to torch while the pool is open; ``close`` restores the previous setting."""

    def __init__(self, spec: EvaluatorSpec, evaluator: Evaluator | None = None) -> None:
        self.spec = spec
        self._evaluator = evaluator if evaluator is not None else build_evaluator(spec)
        self._threads_before = set_torch_threads(spec.threads)   # torch is loaded by now if used
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
        job = self._queue.popleft()
        return [safe_evaluate(self._evaluator, job, self.worker, job.timeout_s)]

    def utilization(self) -> float | None:
        return None                                    # the driver is the worker

    def summary(self) -> str | None:
        return None

    def close(self) -> None:
        self._queue.clear()
        self._evaluator.close()
        if self._threads_before is not None:
            set_torch_threads(self._threads_before)
            self._threads_before = None

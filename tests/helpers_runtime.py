"""Shared by the runtime tests: waiting on a condition instead of sleeping, a child environment
free of the parent's Ray settings, cheap polling of a run's progress while it writes, and a probe
evaluator that reports the torch threads it ran under."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def wait_for(condition: Callable[[], T], timeout: float = 120.0, what: str | Callable[[], str] = "",
             every: float = 0.05) -> T:
    """Poll `condition` until it returns something truthy (returned); fail the test after
    `timeout` seconds, saying `what` was awaited (a callable: evaluated then, e.g. a log's tail).
    The condition may assert, to fail early (a child process that died)."""
    end = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > end:
            raise AssertionError(f"not within {timeout:g}s: {what() if callable(what) else what}")
        time.sleep(every)
    return value


def clean_env(**extra: str) -> dict[str, str]:
    """os.environ without RAY_* (a test's own local Ray must not leak into children)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    return {**env, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1", **extra}


def finished(db: Path) -> int:
    """Finished trials in a run's SQLite store (0 before the tables exist)."""
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=5) as con:
            return con.execute("SELECT COUNT(*) FROM trials WHERE state IN ('COMPLETE', 'FAIL')").fetchone()[0]
    except sqlite3.Error:
        return 0


class ThreadsEvaluator:
    """``backend: helpers_runtime:ThreadsEvaluator`` (tests/ on the path): scores every candidate
    with the torch thread count it ran under; loads torch, as the real backends do."""

    def __init__(self, spec: Any) -> None:
        import torch

        self.torch, self.tasks = torch, list(spec.tasks)

    def evaluate(self, job: Any) -> Any:
        from evomerge.evaluate.result import EvalResult

        n = float(self.torch.get_num_threads())
        return EvalResult(job.candidate_id, scores={t: n for t in self.tasks}, item_scores={t: [n] for t in self.tasks})

    def close(self) -> None:
        """Nothing to release."""

"""A tiny deterministic run loop for searcher tests: k candidates in flight, told first-in first-out."""

from __future__ import annotations

import json
from collections import deque
from typing import Callable

import numpy as np

from evomerge.search import Candidate, Outcome, Searcher, SpaceInfo, make_searcher


def drive(searcher: Searcher, evaluate: Callable[[Candidate], Outcome], budget: int,
          parallel: int = 4, log: list | None = None) -> list:
    """Tell up to ``budget`` outcomes; returns the (id, x) told, in order."""
    log = [] if log is None else log
    inflight: deque[Candidate] = deque()
    told = 0
    while told < budget:
        inflight.extend(searcher.ask(parallel - len(inflight)))
        if not inflight:
            break
        cand = inflight.popleft()
        searcher.tell(cand.id, evaluate(cand))
        log.append((cand.id, cand.x.copy()))
        told += 1
    return log


def resumed_equals_uninterrupted(name: str, space: SpaceInfo, options: dict,
                                 evaluate: Callable[[Candidate], Outcome], stop_at: int, total: int,
                                 parallel: int = 4) -> tuple[list, list, dict, dict]:
    """Run once straight through, once stopped after ``stop_at`` tells and restored from JSON."""
    straight = make_searcher(name, space, options, seed=7)
    log_a = drive(straight, evaluate, total, parallel)
    first = make_searcher(name, space, options, seed=7)
    log_b = drive(first, evaluate, stop_at, parallel)
    saved = json.dumps(first.state_dict())
    resumed = make_searcher(name, space, options, seed=123)   # the seed must come from the state
    resumed.load_state_dict(json.loads(saved))
    drive(resumed, evaluate, total - stop_at, parallel, log_b)
    return log_a, log_b, straight.state_dict(), resumed.state_dict()


def same_log(a: list, b: list) -> bool:
    return len(a) == len(b) and all(i == j and np.array_equal(x, y) for (i, x), (j, y) in zip(a, b))

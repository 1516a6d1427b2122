"""The search loop: ask, store, evaluate, store, tell — independent of where evaluation runs.

It keeps ``pool.capacity`` candidates in flight, asks the searcher one candidate at a time
(so every ask is one durable trial), stores each result the moment it arrives, tells the
searcher and saves its state. Every ask and tell gets a sequence number; ``restore`` rebuilds
the searcher of an interrupted run from its last saved state plus the events recorded after it
(see evomerge/runtime/store.py). KeyboardInterrupt propagates: everything told is durable, the
candidates in flight stay RUNNING and are evaluated again on resume.

The budget counts evaluations, or (racing only) scored items: every item of every stored rung,
earlier sessions' included. A rung's cost is known before it is sent (its width times the
tasks), so the loop never sends one the budget cannot pay for, counting the rungs in flight:
a new candidate is asked only while its first rung fits, and a race whose next rung does not
fit ends there, told and stored like a race stopped by its confidence bound (``fidelity.full``
false, ``fidelity.cut: "budget"``). So the run ends with every candidate finished and at most
the budget's items scored; raising the budget on resume starts new candidates.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from evomerge.errors import EvomergeError
from evomerge.evaluate.result import EvalResult
from evomerge.experiment import Budget
from evomerge.runtime.pool import EvalJob, EvaluationPool
from evomerge.runtime.progress import RunProgress
from evomerge.runtime.racing import RaceState, build_race
from evomerge.runtime.records import best_trial, rung_items
from evomerge.runtime.references import score_references
from evomerge.runtime.session import Session
from evomerge.runtime.store import RunStore, StoreError


@dataclass
class LoopSummary:
    evaluated: int          # finished this session
    total: int              # finished in the whole run
    failed: int
    stopped: str            # "budget" | "searcher done" | "searcher idle"
    items: int = 0          # raced runs: items scored in the whole run (every rung)


def restore(store: RunStore, session: Session) -> tuple[int, list[Any]]:
    """Bring the searcher to the run's last durable event; (next seq, candidates to resubmit)."""
    searcher, scoring = session.searcher, session.scoring
    saved = store.searcher_state()
    seen = -1
    if saved is not None:
        seen, state = saved
        searcher.load_state_dict(state)
    handed, last = [], seen
    for seq, kind, rec in store.events():
        last = max(last, seq)
        if seq <= seen:
            continue
        if kind == "tell":
            searcher.tell(rec.number, scoring.outcome(rec.scores, rec.item_scores, rec.error))
            continue
        while True:  # replay the ask; requeued in-flight candidates come out first
            got = searcher.ask(1)
            if not got or got[0].id > rec.number:
                raise StoreError(f"store {store.url}: the searcher does not reproduce candidate {rec.number} "
                                 f"on replay (was the searcher or its options changed?)")
            handed.append(got[0])
            if got[0].id == rec.number:
                _check_same(got[0], rec.genome, store)
                break
    pending = set(searcher.in_flight)
    return last + 1, [c for c in handed if c.id in pending]


def _check_same(cand: Any, genome: list[float], store: RunStore) -> None:
    if not np.array_equal(np.asarray(cand.x, dtype=float), np.asarray(genome, dtype=float)):
        raise StoreError(f"store {store.url}: candidate {cand.id} comes back with a different genome on "
                         f"replay (was the searcher, its options or the seed changed?)")


def run_loop(store: RunStore, session: Session, pool: EvaluationPool, budget: int | Budget,
             show_progress: bool = True) -> LoopSummary:
    """Search until the budget (evaluations, or a Budget; counting earlier sessions) is spent or
    the searcher stops."""
    searcher, space, scoring = session.searcher, session.space, session.scoring
    limits = budget if isinstance(budget, Budget) else Budget(evaluations=budget)
    max_evals, max_items = limits.evaluations, limits.items
    seq, resubmit = restore(store, session)
    score_references(store, session, pool, echo=_stderr if show_progress else None)
    records = {r.number: r for r in store.trials()}
    finished = [r for r in records.values() if r.state != "running"]
    total, failed = len(finished), sum(r.state == "failed" for r in finished)
    in_flight: dict[int, Any] = {}
    evaluated, stopped = 0, "budget"
    directions = [o.direction for o in scoring.objectives]
    race = _race(session)
    if max_items is not None and race is None:
        raise EvomergeError("budget.items: counts the items racing scores; this run does not race")
    spent = sum(t.rung_items for t in records.values())                      # items scored so far
    for r in (r for t in records.values() for r in t.rungs if race is not None):
        race.learn(tuple(r["items"]), r["item_scores"])                      # the split's size, if seen
    reserved: dict[int, int] = {}                                           # rungs in flight: their cost
    if max_items is not None:
        progress = RunProgress(store.name, max_items, spent, directions, show_progress, pool.utilization,
                               unit="items")
    else:
        progress = RunProgress(store.name, max_evals or 0, total, directions, show_progress, pool.utilization)
    races: dict[int, RaceState] = {}
    recipes: dict[int, dict[str, Any]] = {}
    incumbent = _incumbent(finished, directions[0]) if race else None
    timeout_s = session.experiment.resources.timeout_s

    def cost(k: int) -> int:
        """The most items rung ``k`` can score (every task's share)."""
        a, b = race.rung(k)
        return (b - a) * len(scoring.tasks)

    def affordable(items: int) -> bool:
        return max_items is None or spent + sum(reserved.values()) + items <= max_items

    def can_start() -> bool:
        if max_evals is not None and total + len(in_flight) >= max_evals:
            return False
        return race is None or affordable(cost(0))

    def dispatch(cid: int) -> None:
        """The candidate's next job: the whole evaluation, or the next rung of its race (a race
        the item budget cannot pay on for ends at its last rung)."""
        if race is None:
            pool.submit(EvalJob(cid, recipes[cid], timeout_s))
            return
        state = races[cid]
        if not race.goes_on(state, incumbent):
            finish(_raced_result(cid, state), state)
        elif not affordable(cost(len(state.rungs))):
            if state.rungs:
                finish(_raced_result(cid, state), state, cut=True)
            else:   # only when the budget was lowered on resume below an asked candidate's first rung
                finish(EvalResult(candidate_id=cid, worker="driver",
                                  error="not scored: the item budget was spent before its first rung"))
        else:
            reserved[cid] = cost(len(state.rungs))
            pool.submit(EvalJob(cid, recipes[cid], timeout_s, items=race.rung(len(state.rungs))))

    def submit(cand: Any) -> None:
        nonlocal seq
        if cand.id in records or store.has_candidate(cand.id):     # resumed: evaluate it again
            rec = records.get(cand.id) or next(r for r in store.trials() if r.number == cand.id)
            _check_same(cand, rec.genome, store)
            recipe: dict[str, Any] | None = rec.recipe or None
            error = None if recipe else "no recipe"
            if race is not None:                # mid-race: go on from the last stored rung
                races[cand.id] = RaceState()
                for r in rec.rungs:
                    races[cand.id].add(tuple(r["items"]), r["item_scores"], r.get("timings", {}), r.get("worker", ""))
        else:
            try:
                recipe, error = space.recipe_dict(cand.x), None
            except (EvomergeError, ValueError) as err:
                recipe, error = None, f"invalid recipe: {err}"
            store.add_candidate(cand.id, cand.x.tolist(), recipe or {}, seq, session.experiment.seed, cand.meta)
            seq += 1
        in_flight[cand.id] = cand
        if error is None:
            recipes[cand.id] = recipe
            races.setdefault(cand.id, RaceState())
            dispatch(cand.id)
        else:
            finish(EvalResult(candidate_id=cand.id, error=error, worker="driver"))

    def receive(result: EvalResult) -> None:
        nonlocal spent
        cid = result.candidate_id
        if cid not in in_flight:
            return  # a late duplicate (e.g. re-queued after a worker died): already stored
        reserved.pop(cid, None)
        if race is None or result.failed:
            finish(result)
            return
        state = races[cid]
        bounds = race.rung(len(state.rungs))
        if any(len(v) > bounds[1] - bounds[0] for v in result.item_scores.values()):
            finish(EvalResult(candidate_id=cid, worker=result.worker, error=f"racing: the evaluator scored more "
                              f"than the {bounds[1] - bounds[0]} items asked (it ignores item ranges)"))
            return
        state.add(bounds, result.item_scores, result.timings, result.worker)
        race.learn(bounds, result.item_scores)
        rung = {"items": list(bounds), "item_scores": result.item_scores, "timings": result.timings,
                "worker": result.worker}
        store.add_rung(cid, len(state.rungs) - 1, rung)
        n = rung_items(rung)
        spent += n
        progress.advance(n if max_items is not None else 0)
        dispatch(cid)

    def finish(result: EvalResult, state: RaceState | None = None, cut: bool = False) -> None:
        nonlocal seq, total, evaluated, incumbent, failed
        cid = result.candidate_id
        outcome = scoring.of_result(result)
        values = scoring.values(result.scores) if not outcome.failed else None
        fidelity = None
        if race is not None and state is not None:
            fidelity = {"items": state.scored, "full": race.complete(state), "rungs": [list(r) for r in state.rungs]}
            if cut:
                fidelity["cut"] = "budget"
            if values is not None and race.complete(state):
                signed = values[0] if directions[0] == "maximize" else -values[0]
                incumbent = signed if incumbent is None else max(incumbent, signed)
        races.pop(cid, None)
        recipes.pop(cid, None)
        failed += store.finish(cid, result, values, seq, fidelity=fidelity) == "failed"
        searcher.tell(cid, outcome)
        seq += 1
        saver.save(seq - 1)
        del in_flight[cid]
        total += 1
        evaluated += 1
        progress.result(None if values is None else values[0], advance=0 if max_items is not None else 1)

    saver = StateSaver(store, searcher)
    with progress, saver.flushing(lambda: seq - 1):
        best = _best(finished, directions[0])
        progress.seed(failed, best)
        for cand in resubmit:
            submit(cand)
        while True:
            while len(in_flight) < pool.capacity and can_start():
                got = searcher.ask(1)
                if not got:
                    break
                submit(got[0])
            if not in_flight:
                if can_start():
                    stopped = "searcher done" if searcher.done else "searcher idle"
                break
            for result in pool.wait(timeout=1.0):
                receive(result)
    return LoopSummary(evaluated, total, failed, stopped, spent)


class StateSaver:
    """Saves the searcher's state after each result, unless saving would cost more than ~5 % of
    the run (huge states, e.g. an archive of raw weights, with millisecond evaluations): then it
    waits until 20x the last save's duration has passed. Skipping is safe: resume replays the
    events recorded after the last saved state. The state is always saved when the loop ends,
    but not when it is interrupted: Ctrl-C can land between a result's store write, the
    searcher's tell and the sequence number, and that state would be told the result again."""

    def __init__(self, store: RunStore, searcher: Any) -> None:
        self.store, self.searcher = store, searcher
        self.cost, self.last, self.saved_seq = 0.0, 0.0, None

    def save(self, seq: int, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self.last < 20 * self.cost:
            return
        self.store.save_searcher_state(self.searcher.state_dict(), seq)
        self.last = time.perf_counter()
        self.cost, self.saved_seq = self.last - now, seq

    @contextlib.contextmanager
    def flushing(self, current_seq: Any):
        yield self
        seq = current_seq()
        if seq >= 0 and seq != self.saved_seq:
            self.save(seq, force=True)


def _race(session: Session) -> Any:
    exp = session.experiment
    if exp.racing is None:
        return None
    return build_race(exp.racing, exp.fitness.tasks, exp.fitness.objectives, exp.fitness.options.get("limit"))


def _raced_result(cid: int, state: RaceState) -> EvalResult:
    """A race's rungs as one result: per-task means over every item scored."""
    scores = {t: sum(v) / len(v) for t, v in state.items.items() if v}
    return EvalResult(candidate_id=cid, scores=scores, item_scores=dict(state.items),
                      timings=dict(state.timings), worker=state.worker)


def _incumbent(records: list[Any], direction: str) -> float | None:
    """Best first-objective value over trials scored on the whole split, higher is better."""
    vals = [next(iter(r.objectives.values())) for r in records if r.state == "complete" and r.objectives
            and r.fidelity.get("full", True)]
    if not vals:
        return None
    return max(vals) if direction == "maximize" else -min(vals)


def _stderr(line: str) -> None:
    import sys

    print(line, file=sys.stderr, flush=True)


def _best(records: list[Any], direction: str) -> float | None:
    """The first objective's best value so far (for the progress bar)."""
    named = [r for r in records if r.objectives]
    if not named:
        return None
    name = next(iter(named[0].objectives))
    best = best_trial(named, name, direction)
    return None if best is None else best.objectives[name]

"""Multi-fidelity racing: the stop rule on known noise, honest storage of every rung, values the
searcher can compare, and a resume that continues a race from its last stored rung."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from evomerge.experiment import Experiment
from evomerge.runtime.racing import Race, RaceState
from evomerge.runtime.simulated import NoisySimulatedEvaluator

NOISY = "evomerge.runtime.simulated:NoisySimulatedEvaluator"

N = 256


def test_rungs_grow_by_eta_up_to_the_limit():
    race = Race(32, 2.0, 2.0, {"t": 1.0}, True)
    assert [race.rung(k) for k in range(4)] == [(0, 32), (32, 64), (64, 128), (128, 256)]
    capped = Race(32, 3.0, 2.0, {"t": 1.0}, True, limit=200)
    assert [capped.rung(k) for k in range(4)] == [(0, 32), (32, 96), (96, 200), (200, 200)]
    st = RaceState()
    for k in range(3):
        st.add(capped.rung(k), {"t": [1.0] * (capped.rung(k)[1] - capped.rung(k)[0])}, {}, "w")
    assert capped.complete(st) and not capped.goes_on(st, None)


def test_stop_rule_on_items_with_known_binomial_noise():
    """p = 0.3 vs an incumbent at 0.6: 32 items (se <= 0.088) already exclude it at z = 2;
    p = 0.55 stays in; without an incumbent everyone goes on; a short rung ends the race."""
    race = Race(32, 2.0, 2.0, {"t": 1.0}, True)
    rng = np.random.default_rng(0)
    bad, close = RaceState(), RaceState()
    bad.add((0, 32), {"t": [1.0] * 10 + [0.0] * 22}, {}, "w")
    close.add((0, 32), {"t": [1.0] * 18 + [0.0] * 14}, {}, "w")
    assert not race.goes_on(bad, 0.6) and race.goes_on(close, 0.6) and race.goes_on(bad, None)
    # minimized objectives race on the negated value
    low = Race(32, 2.0, 2.0, {"t": 1.0}, False)
    assert low.goes_on(bad, -0.5) and not low.goes_on(close, -0.2)
    # coverage of the bound: a candidate whose true mean equals the incumbent is rarely stopped
    stopped = 0
    for _ in range(400):
        st = RaceState()
        st.add((0, 64), {"t": list((rng.random(64) < 0.6).astype(float))}, {}, "w")
        stopped += not race.goes_on(st, 0.6)
    assert stopped / 400 < 0.05
    short = RaceState()
    short.add((0, 32), {"t": [1.0] * 32}, {}, "w")
    short.add((32, 64), {"t": [1.0] * 7}, {}, "w")
    assert short.exhausted and race.complete(short)


def experiment(name: str, budget: int, racing: dict | None, seed: int = 0) -> Experiment:
    data = {"name": name, "models": {"base": "zoo:base", "sources": ["zoo:a", "zoo:b"]},
            "search_space": {"kind": "parameter", "method": "dare_ties", "weight": {"low": 0.0, "high": 2.0}},
            "fitness": {"tasks": ["sphere"], "options": {"items": N}},
            "searcher": {"name": "cmaes", "options": {"population_size": 6}},
            "budget": budget, "seed": seed, "backend": NOISY}
    if racing is not None:
        data["racing"] = racing
    return Experiment.model_validate(data)


def run(tmp: Path, exp: Experiment, pool=None, resume: bool = False):
    from evomerge.runtime.inprocess import InProcessPool
    from evomerge.runtime.loop import run_loop
    from evomerge.runtime.session import build_session
    from evomerge.runtime.store import RunStore, sqlite_url

    session = build_session(exp)
    url = sqlite_url(tmp / f"{exp.name}.db")
    store = RunStore.open(url) if resume else RunStore.create(url, exp.name, exp.model_dump(mode="json"), "cmaes",
                                                               exp.objective_directions(), exp.limits.evaluations,
                                                               extra={"budget_items": exp.limits.items})
    pool = pool or InProcessPool(session.spec)
    run.summary = run_loop(store, session, pool, exp.limits, show_progress=False)
    return store, pool


def test_every_rung_is_stored_and_the_told_value_is_the_mean_of_the_items_scored(tmp_path):
    store, pool = run(tmp_path, experiment("race", 30, {"first": 32, "eta": 2.0}))
    trials = store.trials()
    assert len(trials) == 30 and all(t.state == "complete" for t in trials)
    partial = [t for t in trials if not t.fidelity["full"]]
    full = [t for t in trials if t.fidelity["full"]]
    assert partial and full and trials[0].fidelity["full"]          # the first has no incumbent to race
    for t in trials:
        items = t.item_scores["sphere"]
        assert t.fidelity["items"] == len(items) == sum(len(r["item_scores"]["sphere"]) for r in t.rungs)
        assert [r["items"] for r in t.rungs] == t.fidelity["rungs"]
        assert t.objectives["score"] == pytest.approx(sum(items) / len(items))
    assert all(t.fidelity["items"] == N for t in full)
    best = max(trials, key=lambda t: t.objectives["score"])
    assert best.fidelity["full"]                                     # a winner always rests on every item
    scored = sum(len(t.item_scores["sphere"]) for t in trials)
    assert scored < 0.8 * 30 * N                                     # racing saved items
    assert sum(1 for _, items in pool._evaluator.jobs if items == (0, 32)) == 30


class Interrupt:
    """The in-process pool, interrupted (Ctrl-C) after ``after`` results."""

    def __init__(self, inner, after: int) -> None:
        self.inner, self.left = inner, after

    capacity = property(lambda self: self.inner.capacity)

    def submit(self, job):
        self.inner.submit(job)

    def wait(self, timeout=None):
        if self.left == 0:
            raise KeyboardInterrupt
        self.left -= 1
        return self.inner.wait(timeout)

    def close(self):
        self.inner.close()

    def utilization(self):
        return self.inner.utilization()

    def summary(self):
        return self.inner.summary()


def test_resume_mid_race_goes_on_from_the_last_stored_rung(tmp_path):
    from evomerge.runtime.inprocess import InProcessPool
    from evomerge.runtime.session import build_session

    exp = experiment("resume", 16, {"first": 32, "eta": 2.0})
    inner = InProcessPool(build_session(exp).spec)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, exp, Interrupt(inner, 2))        # candidate 0: rungs [0, 32) and [32, 64) stored
    from evomerge.runtime.store import RunStore, sqlite_url

    mid = {t.number: t for t in RunStore.open(sqlite_url(tmp_path / "resume.db")).trials()}
    assert mid[0].state == "running" and [r["items"] for r in mid[0].rungs] == [[0, 32], [32, 64]]
    store, pool = run(tmp_path, exp, resume=True)
    done = {t.number: t for t in store.trials()}
    assert len(done) == 16 and done[0].fidelity["rungs"][:3] == [[0, 32], [32, 64], [64, 128]]
    assert done[0].fidelity["items"] == N and len(done[0].item_scores["sphere"]) == N
    assert (0, (0, 32)) not in pool._evaluator.jobs and (0, (64, 128)) in pool._evaluator.jobs
    # the resumed candidate's items are exactly those an uninterrupted evaluation scores
    whole = NoisySimulatedEvaluator(type("S", (), {"options": {"items": N}, "tasks": ("sphere",)})())
    from evomerge.runtime.pool import EvalJob

    ref = whole.evaluate(EvalJob(0, done[0].recipe))
    assert done[0].item_scores["sphere"] == ref.item_scores["sphere"]
    # and the whole resumed run is the run that was never interrupted: same candidates, rungs, values
    straight, _ = run(tmp_path, exp.model_copy(update={"name": "straight"}))

    def shape(trials):
        return [(t.number, t.state, t.genome, t.objectives, t.fidelity, [r["items"] for r in t.rungs])
                for t in trials]

    assert shape(store.trials()) == shape(straight.trials())


def test_racing_refuses_searchers_that_need_every_item_and_several_objectives():
    from pydantic import ValidationError

    data = experiment("x", 4, {"first": 8}).model_dump()
    data["searcher"] = {"name": "m2n2", "options": {}}
    with pytest.raises(ValidationError, match="racing: m2n2"):
        Experiment.model_validate(data)


def test_an_evaluator_that_ignores_item_ranges_fails_its_candidates_instead_of_double_counting(tmp_path):
    exp = experiment("ignores", 3, {"first": 2}).model_dump()
    exp["backend"] = "evomerge.runtime.simulated:SimulatedEvaluator"   # scores all 4 recipe numbers every time
    store, _ = run(tmp_path, Experiment.model_validate(exp))
    assert [t.state for t in store.trials()] == ["failed"] * 3
    assert "ignores item ranges" in store.trials()[0].error


def rung_items(trials) -> int:
    return sum(len(v) for t in trials for r in t.rungs for v in r["item_scores"].values())


def with_budget(exp: Experiment, budget, name: str) -> Experiment:
    return Experiment.model_validate({**exp.model_dump(mode="json"), "budget": budget, "name": name})


def test_an_item_budget_is_never_exceeded_and_every_race_ends_finished(tmp_path):
    """3000 items of a 256-item split: the run stops when the next first rung (32 items) would not
    fit; a race whose next rung does not fit ends there, stored as cut by the budget."""
    exp = with_budget(experiment("x", 1, {"first": 32, "eta": 2.0}), {"items": 3000}, "items")
    store, pool = run(tmp_path, exp)
    trials = store.trials()
    scored = rung_items(trials)
    assert run.summary.stopped == "budget" and run.summary.items == scored
    assert 3000 - 32 < scored <= 3000
    assert sum(min(b, N) - min(a, N) for _, (a, b) in pool._evaluator.jobs) == scored   # every item scored counts
    assert all(t.state == "complete" for t in trials)                     # nothing left half-raced
    cut = [t for t in trials if t.fidelity.get("cut") == "budget"]
    assert all(not t.fidelity["full"] and t.fidelity["items"] < N for t in cut)
    assert store.info().budget_items == 3000 and store.info().budget is None
    # with an evaluation limit too, whichever comes first stops the run
    both = with_budget(exp, {"items": 3000, "evaluations": 5}, "both")
    store, _ = run(tmp_path, both)
    assert len(store.trials()) == 5 and run.summary.items == rung_items(store.trials()) < 3000


def test_resume_mid_race_keeps_the_items_already_scored(tmp_path):
    from evomerge.runtime.inprocess import InProcessPool
    from evomerge.runtime.session import build_session

    exp = with_budget(experiment("x", 1, {"first": 32, "eta": 2.0}), {"items": 2000}, "cutoff")
    inner = InProcessPool(build_session(exp).spec)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, exp, Interrupt(inner, 12))
    from evomerge.runtime.store import RunStore, sqlite_url

    mid = RunStore.open(sqlite_url(tmp_path / "cutoff.db")).trials()
    assert any(t.state == "running" and t.rungs for t in mid)              # interrupted mid-race
    store, pool = run(tmp_path, exp, resume=True)
    resumed = rung_items(store.trials())
    assert resumed == run.summary.items <= 2000
    assert rung_items(mid) + sum(min(b, N) - min(a, N) for _, (a, b) in pool._evaluator.jobs) == resumed
    straight, _ = run(tmp_path, exp.model_copy(update={"name": "straight"}))

    def shape(trials):
        return [(t.number, t.state, t.genome, t.objectives, t.fidelity) for t in trials]

    assert shape(store.trials()) == shape(straight.trials())
    # a larger budget on resume goes on from the items already scored
    more = with_budget(exp, {"items": 2600}, "cutoff")
    store, pool = run(tmp_path, more, resume=True)
    assert resumed < run.summary.items == rung_items(store.trials()) <= 2600
    assert sum(min(b, N) - min(a, N) for _, (a, b) in pool._evaluator.jobs) == run.summary.items - resumed


class Shuffled:
    """Several workers: ``capacity`` jobs in flight, results back one at a time in a seeded random order."""

    def __init__(self, spec, capacity: int) -> None:
        self.evaluator, self.capacity = NoisySimulatedEvaluator(spec), capacity
        self.jobs, self.rng, self.most = [], np.random.default_rng(0), 0

    def submit(self, job):
        self.jobs.append(job)
        self.most = max(self.most, len(self.jobs))

    def wait(self, timeout=None):
        return [self.evaluator.evaluate(self.jobs.pop(int(self.rng.integers(len(self.jobs)))))] if self.jobs else []

    def close(self):
        pass

    def utilization(self):
        return None


def test_an_item_budget_holds_with_rungs_in_flight_on_several_workers(tmp_path):
    from evomerge.runtime.session import build_session

    exp = with_budget(experiment("x", 1, {"first": 32, "eta": 2.0}), {"items": 2500}, "workers")
    pool = Shuffled(build_session(exp).spec, 4)
    store, _ = run(tmp_path, exp, pool)
    trials = store.trials()
    assert pool.most == 4 and all(t.state == "complete" for t in trials)
    assert run.summary.stopped == "budget" and 2500 - 32 < rung_items(trials) == run.summary.items <= 2500


@pytest.mark.parametrize("budget, racing, line", [
    ({"items": 0}, True, "exp.yaml: budget.items: Input should be greater than or equal to 1"),
    ({"items": "many"}, True, "exp.yaml: budget.items: Input should be a valid integer"),
    ({"item": 300}, True, "exp.yaml: budget.item: unknown field"),
    ({}, True, "exp.yaml: budget: give evaluations, items or both"),
    (0, True, "exp.yaml: budget: Input should be greater than or equal to 1"),
    ({"items": 20}, True, "exp.yaml: budget.items: 20 cannot pay for one first rung (32 items x 1 task(s) = 32)"),
    ({"items": 3000}, False, "exp.yaml: budget.items: counts the items racing scores; without racing"),
])
def test_a_bad_budget_is_one_line_naming_the_field(budget, racing, line):
    from evomerge.errors import ConfigError
    from evomerge.experiment import parse_experiment

    data = experiment("x", 1, {"first": 32} if racing else None).model_dump(mode="json")
    if not racing:
        data.pop("racing", None)
    with pytest.raises(ConfigError) as err:
        parse_experiment({**data, "budget": budget}, "exp.yaml", Path("."))
    assert str(err.value).startswith(line) and "\n" not in str(err.value)

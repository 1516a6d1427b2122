"""Every searcher honours the ask/tell contract: exact resume from JSON, failures, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from evomerge.errors import EvomergeError
from evomerge.search import SEARCHERS, Outcome, SpaceInfo, make_searcher
from helpers_search import drive, resumed_equals_uninterrupted, same_log

DIM = 3
SPACE = SpaceInfo(np.zeros(DIM), np.ones(DIM), x0=np.full(DIM, 0.25))
SPACE2 = SpaceInfo(np.zeros(2), np.ones(2), n_objectives=2)

# name -> (space, options, total tells) small enough to take well under a second
CASES = {
    "cmaes": (SPACE, {"population_size": 5, "restarts": 1, "max_generations": 12}, 40),
    "cmaes-restart": (SPACE, {"population_size": 4, "restarts": 2}, 200),
    "m2n2": (SPACE, {"archive_size": 6, "mutation_std": 0.05}, 40),
    "m2n2-slerp": (SPACE, {"archive_size": 5, "mixing": "slerp", "init_std": 0.2}, 30),
    "map": (SPACE2, {"rounds": 2, "per_round": 4, "population": 16, "generations": 10}, 16),
    "random": (SPACE, {"budget": 30}, 30),
    "grid": (SPACE, {"points_per_dim": 3}, 27),
}


def evaluate(cand):
    """Deterministic, with per-item scores and a failure every 7th candidate."""
    if cand.id % 7 == 3:
        return Outcome.failure("simulated out of memory")
    x = cand.x
    items = np.clip(1.0 - np.abs(x[:, None] - np.linspace(0, 1, 4)[None, :]), 0, 1).reshape(-1)
    if len(x) == 2:
        return Outcome((-float(np.sum((x - 0.2) ** 2)), -float(np.sum((x - 0.7) ** 2))), items)
    return Outcome((-float(np.sum((x - 0.6) ** 2)),), items)


def evaluate_flat(cand):
    """A plateau: CMA-ES stops (tolfun) and restarts with a doubled population."""
    out = evaluate(cand)
    return out if out.failed else Outcome((0.0,), out.item_scores)


def evaluator(case):
    return evaluate_flat if case.endswith("restart") else evaluate


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("stop_fraction", [0.3, 0.7])
def test_restore_from_json_continues_exactly(case, stop_fraction):
    space, options, total = CASES[case]
    name = case.split("-")[0]
    stop = max(1, int(total * stop_fraction))
    log_a, log_b, state_a, state_b = resumed_equals_uninterrupted(name, space, options, evaluator(case), stop, total)
    assert len(log_a) > stop
    assert same_log(log_a, log_b)
    assert json.dumps(state_a) == json.dumps(state_b)


def test_cmaes_restart_case_really_restarts():
    space, options, total = CASES["cmaes-restart"]
    s = make_searcher("cmaes", space, options, seed=7)
    drive(s, evaluate_flat, total)
    assert s.restart >= 1 and s.segment["popsize"] == 8


def test_pending_candidates_are_handed_out_again_in_order():
    s = make_searcher("random", SPACE, {}, seed=1)
    first = s.ask(3)
    s.tell(first[1].id, Outcome((0.0,)))
    fresh = make_searcher("random", SPACE, {}, seed=1)
    fresh.load_state_dict(json.loads(json.dumps(s.state_dict())))
    again = fresh.ask(1) + fresh.ask(5)
    assert [c.id for c in again[:2]] == [first[0].id, first[2].id]
    assert np.array_equal(again[1].x, first[2].x)
    assert [c.id for c in again[2:]] == [3, 4, 5, 6]


@pytest.mark.parametrize("name", sorted(SEARCHERS))
def test_searchers_survive_every_candidate_failing(name):
    space = SPACE2 if name == "map" else SPACE
    opts = {"map": {"rounds": 0}, "grid": {"points_per_dim": 2}}.get(name, {})
    s = make_searcher(name, space, opts, seed=0)
    told = drive(s, lambda c: Outcome.failure("boom"), 40)
    assert len(told) >= 8
    assert all(space.lower[0] <= v <= space.upper[0] for _, x in told for v in x)


def test_non_finite_values_count_as_failures():
    s = make_searcher("cmaes", SPACE, {"population_size": 4}, seed=0)
    cands = s.ask(4)
    for c in cands:
        s.tell(c.id, Outcome((float("nan"),)) if c.id == 0 else Outcome((1.0 * c.id,)))
    assert s.segment["history"][0] == [None, 1.0, 2.0, 3.0]


@pytest.mark.parametrize("name,space,options,field", [
    ("nope", SPACE, {}, "searcher.name"),
    ("cmaes", SPACE, {"sigma": 0.3}, "searcher.options.sigma"),
    ("cmaes", SPACE, {"population_size": 1}, "searcher.options.population_size"),
    ("cmaes", SPACE, {"sigma0": -1}, "searcher.options.sigma0"),
    ("cmaes", SPACE2, {}, "searcher.name"),
    ("m2n2", SPACE, {"mixing": "cubic"}, "searcher.options.mixing"),
    ("m2n2", SPACE, {"attraction": "yes"}, "searcher.options.attraction"),
    ("map", SPACE2, {"initial_points": 3}, "searcher.options.initial_points"),
    ("grid", SpaceInfo(np.zeros(12), np.ones(12)), {"points_per_dim": 4}, "searcher.options.points_per_dim"),
    ("random", SPACE, {"budget": 2.5}, "searcher.options.budget"),
])
def test_bad_options_raise_one_clear_line(name, space, options, field):
    with pytest.raises(EvomergeError) as err:
        make_searcher(name, space, options, seed=0)
    assert str(err.value).startswith(field) and "\n" not in str(err.value)


def test_bad_space_and_bad_calls_raise_one_clear_line():
    with pytest.raises(EvomergeError, match="x0 lies outside"):
        SpaceInfo(np.zeros(2), np.ones(2), x0=np.array([0.5, 2.0]))
    with pytest.raises(EvomergeError, match="lower bound"):
        SpaceInfo(np.ones(2), np.zeros(2))
    s = make_searcher("random", SPACE, {}, seed=0)
    with pytest.raises(EvomergeError, match="not asked"):
        s.tell(99, Outcome((1.0,)))
    c = s.ask(1)[0]
    with pytest.raises(EvomergeError, match="expected 1"):
        s.tell(c.id, Outcome((1.0, 2.0)))
    with pytest.raises(EvomergeError, match="expected grid"):
        make_searcher("grid", SPACE, {}, seed=0).load_state_dict(s.state_dict())
    with pytest.raises(EvomergeError, match="same searcher options"):
        make_searcher("random", SPACE, {"budget": 5}, seed=0).load_state_dict(s.state_dict())


def test_m2n2_without_item_scores_says_so():
    s = make_searcher("m2n2", SPACE, {"archive_size": 2}, seed=0)
    c = s.ask(1)[0]
    with pytest.raises(EvomergeError, match="per-item scores"):
        s.tell(c.id, Outcome((1.0,)))


def test_importing_searchers_pulls_in_no_heavy_modules():
    code = ("import sys, evomerge.search as s, importlib\n"
            "[importlib.import_module(v.split(':')[0]) for v in s.SEARCHERS.values()]\n"
            "print(sorted(m for m in ('torch', 'ray', 'vllm', 'evomerge.engine', 'optuna') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

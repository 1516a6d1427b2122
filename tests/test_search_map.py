"""MAP: exact quadratic fits, predicted vs measured, and a front close to the true one."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from evomerge.search import Outcome, SpaceInfo, make_searcher
from evomerge.search.map import fit_quadratic, quadratic_features
from evomerge.search.nsga2 import nsga2
from evomerge.search.pareto import crowding_distance, hypervolume_2d, non_dominated_ranks
from helpers_search import drive

A, B = np.array([0.2, 0.3, 0.1]), np.array([0.9, 0.7, 0.8])
SPACE = SpaceInfo(np.zeros(3), np.ones(3), n_objectives=2)
REF = np.array([-2.0, -2.0])


def two_tasks(x):
    return np.array([1 - np.sum((x - A) ** 2), 1 - np.sum((x - B) ** 2)])


def evaluate(c):
    return Outcome(tuple(float(v) for v in two_tasks(c.x)))


@functools.lru_cache(maxsize=None)
def true_hypervolume():
    t = np.linspace(0, 1, 4001)[:, None]
    return hypervolume_2d(np.array([two_tasks(p) for p in A + (B - A) * t]), REF)


def test_quadratic_fit_recovers_a_random_quadratic_exactly():
    rng = np.random.default_rng(0)
    coef = rng.normal(size=(10, 2))
    x = rng.uniform(size=(15, 3))
    fitted = fit_quadratic(x, quadratic_features(x) @ coef)
    assert np.allclose(fitted, coef, atol=1e-6)


def test_pareto_helpers_on_a_hand_made_set():
    f = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [0.2, 0.2], [0.5, 0.4]])
    assert non_dominated_ranks(f).tolist() == [0, 0, 0, 2, 1]
    assert np.isinf(crowding_distance(f[:3])[:2]).all()
    assert hypervolume_2d(f, np.zeros(2)) == pytest.approx(0.25)     # points on the axes add nothing
    assert hypervolume_2d(f, -np.ones(2)) == pytest.approx(2.0 + 1.5 * 0.5 + 1.0 * 0.5)


def test_nsga2_spreads_along_a_known_front():
    x, f = nsga2(lambda x: np.stack([two_tasks(p) for p in x]), np.zeros(3), np.ones(3),
                 np.random.default_rng(0), pop_size=32, generations=30)
    assert hypervolume_2d(f, REF) > 0.97 * true_hypervolume()
    assert np.ptp(f[:, 0]) > 0.5


@pytest.mark.parametrize("seed", [0, 1])
def test_map_predicts_what_it_measures_and_finds_the_front(seed):
    s = make_searcher("map", SPACE, {"rounds": 3, "per_round": 8, "population": 32, "generations": 30}, seed)
    told = drive(s, evaluate, 1000)
    assert s.done and len(told) == len(s.measured)
    rep = s.report()
    assert max(rep["mae"]) < 1e-6                     # quadratic objectives: surrogate is exact
    assert set(rep["mae_by_round"]) == {"1", "2", "3"}
    front = s.pareto_front()
    assert all(m["predicted"] is None or np.allclose(m["predicted"], m["values"], atol=1e-6) for m in front)
    hv = hypervolume_2d(np.array([m["values"] for m in front]), REF)
    assert hv > 0.98 * true_hypervolume()
    grid = make_searcher("grid", SPACE, {"budget": len(told)}, seed)
    grid_hv = hypervolume_2d(np.array([evaluate(type("C", (), {"x": x})).values
                                       for _, x in drive(grid, evaluate, len(told))]), REF)
    assert hv > grid_hv


def test_front_candidates_carry_predictions_and_design_starts_with_center_and_vertices():
    s = make_searcher("map", SPACE, {"rounds": 1, "per_round": 3, "population": 16, "generations": 5}, 0)
    design = s.ask(100)
    assert len(design) == s.opts["initial_points"] >= 10
    xs = [tuple(c.x) for c in design]
    assert xs[0] == (0.5, 0.5, 0.5) and (0.0, 0.0, 0.0) in xs and (1.0, 1.0, 1.0) in xs
    assert s.ask(1) == []                            # the round waits for its results
    for c in design:
        s.tell(c.id, evaluate(c))
    front = s.ask(10)
    assert len(front) == 3 and all(len(c.meta["predicted"]) == 2 and c.meta["round"] == 1 for c in front)
    assert s.done

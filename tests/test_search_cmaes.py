"""CMA-ES finds known optima on analytic problems and beats random search at equal budget."""

from __future__ import annotations

import numpy as np
import pytest

from evomerge.search import Outcome, SpaceInfo, make_searcher
from helpers_search import drive

DIM = 6
SPACE = SpaceInfo(-5 * np.ones(DIM), 5 * np.ones(DIM), x0=np.full(DIM, 2.0))


def sphere(c):
    return Outcome((-float(np.sum((c.x - 1.0) ** 2)),))


def rastrigin(c):
    x = c.x
    return Outcome((-float(10 * len(x) + np.sum(x ** 2 - 10 * np.cos(2 * np.pi * x))),))


def best_of(name, options, evaluate, budget, seed, space=SPACE):
    s = make_searcher(name, space, options, seed)
    told = drive(s, evaluate, budget, parallel=4)
    return max(evaluate(type("C", (), {"x": x, "id": i})).values[0] for i, x in told), len(told)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sphere_reaches_tolerance_and_beats_random(seed):
    cma, n = best_of("cmaes", {}, sphere, 600, seed)
    rnd, _ = best_of("random", {}, sphere, 600, seed)
    assert n == 600
    assert cma > -1e-3          # within 0.03 of the optimum at (1, ..., 1)
    assert cma > rnd


@pytest.mark.parametrize("seed", [0, 1])
def test_rastrigin_with_restarts_gets_near_the_global_optimum(seed):
    cma, _ = best_of("cmaes", {"restarts": 6, "population_size": 20}, rastrigin, 3000, seed)
    rnd, _ = best_of("random", {}, rastrigin, 3000, seed)
    assert cma > -5.0           # global optimum 0; local optima sit at integer values ~1 apart
    assert cma > rnd + 10


def test_generation_waits_for_all_results_then_moves_on():
    s = make_searcher("cmaes", SPACE, {"population_size": 6}, seed=0)
    gen = s.ask(10)
    assert len(gen) == 6 and {c.meta["generation"] for c in gen} == {0}
    for c in gen[:-1]:
        s.tell(c.id, sphere(c))
    assert s.ask(3) == []
    s.tell(gen[-1].id, sphere(gen[-1]))
    nxt = s.ask(3)
    assert [c.meta["generation"] for c in nxt] == [1, 1, 1] and nxt[0].id == 6


def test_failed_candidates_rank_as_the_generation_worst():
    """Failing the good half must steer CMA-ES away from it, like the worst real value would."""
    def half_fails(c):
        return Outcome.failure("nan weights") if c.x[0] > 0 else Outcome((float(-c.x[0] ** 2),))

    s = make_searcher("cmaes", SpaceInfo(-np.ones(2), np.ones(2), x0=np.zeros(2)), {}, seed=0)
    told = drive(s, half_fails, 300)
    assert np.mean([x[0] for _, x in told[-30:]]) < 0


def test_tampered_state_fails_loudly_instead_of_diverging():
    from evomerge.errors import EvomergeError

    s = make_searcher("cmaes", SPACE, {"population_size": 4}, seed=0)
    drive(s, sphere, 6)
    state = s.state_dict()
    state["algo"]["segment"]["seed"] += 1
    with pytest.raises(EvomergeError, match="replay"):
        make_searcher("cmaes", SPACE, {"population_size": 4}, seed=0).load_state_dict(state)


def test_default_population_is_a_multiple_of_the_workers_so_none_idles_at_a_generation_end():
    def popsize(dim, workers, **opts):
        space = SpaceInfo(lower=np.zeros(dim), upper=np.ones(dim), workers=workers)
        s = make_searcher("cmaes", space, opts, seed=0)
        return len(s.ask(64))  # one generation is handed out, then nothing until it is told

    assert popsize(10, 1) == 10          # 4 + int(3 ln 10)
    assert popsize(10, 8) == 16          # rounded up to two waves of 8
    assert popsize(4, 8) == 8
    assert popsize(10, 8, population_size=10) == 10  # an explicit size is kept


def test_initial_design_scores_x0_and_a_sobol_spread_first_then_starts_at_their_best():
    s = make_searcher("cmaes", SPACE, {"initial_design": 8, "population_size": 6}, seed=0)
    design = s.ask(20)
    assert len(design) == 8 and [c.meta["design"] for c in design] == list(range(8))
    assert design[0].x.tolist() == SPACE.x0.tolist()
    pts = np.array([c.x for c in design[1:]])
    assert np.all(pts >= -5) and np.all(pts <= 5) and len({tuple(p) for p in pts}) == 7
    assert np.ptp(pts, axis=0).min() > 4                      # spread over the box, not around x0
    for c in design[:-1]:
        s.tell(c.id, sphere(c))
    assert s.ask(3) == []                                     # CMA-ES waits for the whole design
    s.tell(design[-1].id, sphere(design[-1]))
    best = max(design, key=lambda c: sphere(c).values[0])
    assert s.segment["mean"] == best.x.tolist()
    gen = s.ask(6)
    assert [c.meta["generation"] for c in gen] == [0] * 6 and gen[0].id == 8


def test_initial_design_on_a_plateau_starts_at_x0():
    """Every design point ties (a score of 0 everywhere off the route): CMA-ES starts where the
    user put it, not at a random Sobol point."""
    s = make_searcher("cmaes", SPACE, {"initial_design": 4, "population_size": 6}, seed=0)
    for c in s.ask(4):
        s.tell(c.id, Outcome(values=(0.0,)))
    assert s.segment["mean"] == SPACE.x0.tolist()


@pytest.mark.parametrize("stop_at", [3, 8, 13])
def test_initial_design_resumes_exactly_mid_design_and_after(stop_at):
    from helpers_search import resumed_equals_uninterrupted, same_log

    a, b, sa, sb = resumed_equals_uninterrupted("cmaes", SPACE, {"initial_design": 8, "population_size": 6},
                                                sphere, stop_at, 30)
    assert same_log(a, b) and sa == sb


def test_initial_design_reaches_a_sphere_optimum_off_x0_faster_at_a_small_budget():
    """x0 far from the optimum: at 40 evaluations the design's start wins on most seeds."""
    far = SpaceInfo(-5 * np.ones(DIM), 5 * np.ones(DIM), x0=np.full(DIM, -4.5))
    wins = 0
    for seed in range(5):
        plain, _ = best_of("cmaes", {"population_size": 8}, sphere, 40, seed, far)
        designed, _ = best_of("cmaes", {"population_size": 8, "initial_design": 8}, sphere, 40, seed, far)
        wins += designed > plain
    assert wins >= 4


def test_an_initial_design_of_one_scores_x0_alone_first():
    s = make_searcher("cmaes", SPACE, {"initial_design": 1, "population_size": 6}, seed=0)
    design = s.ask(20)
    assert len(design) == 1 and design[0].x.tolist() == SPACE.x0.tolist()
    s.tell(design[0].id, sphere(design[0]))
    assert [c.meta["generation"] for c in s.ask(6)] == [0] * 6

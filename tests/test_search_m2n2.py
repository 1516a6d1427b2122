"""M2N2: fitness sharing, attraction, split-point crossover, steady-state replacement, and results."""

from __future__ import annotations

import numpy as np
import pytest

from evomerge.search import Outcome, SpaceInfo, make_searcher
from evomerge.search.m2n2 import attraction, crossover, shared_fitness, slerp
from helpers_search import drive


def test_shared_fitness_splits_each_item_among_those_who_solve_it():
    s = np.array([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    # item 0 shared by two members (1/2 each), items 1 and 2 owned alone
    assert shared_fitness(s).tolist() == [1.5, 0.5, 1.0]
    assert shared_fitness(s, alpha=2.0).tolist() == [1.25, 0.25, 1.0]


def test_attraction_rewards_strength_where_the_first_parent_is_weak():
    s = np.array([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 1.0, 1.0]])
    g = attraction(s, 0)
    assert g[0] == 0 and g[1] == pytest.approx(0.5) and g[2] == pytest.approx(1.5)


def test_crossover_uses_w_before_the_split_and_one_minus_w_after():
    a, b = np.zeros(5), np.ones(5)
    child = crossover(a, b, split=2, w=0.8)
    assert child.tolist() == pytest.approx([0.2, 0.2, 0.8, 0.8, 0.8])
    assert crossover(a, b, split=5, w=1.0).tolist() == a.tolist()
    assert crossover(a, b, split=0, w=1.0).tolist() == b.tolist()


def test_slerp_keeps_the_norm_between_orthogonal_vectors_and_hits_the_ends():
    a, b = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    assert np.linalg.norm(slerp(a, b, 0.3)) == pytest.approx(1.0)
    assert slerp(a, b, 0.0) == pytest.approx(a) and slerp(a, b, 1.0) == pytest.approx(b)
    assert slerp(a, 2 * a, 0.5) == pytest.approx(1.5 * a)      # colinear: lerp
    x, y = np.array([1.0, 0.0, 2.0]), np.array([0.0, 1.0, 0.0])
    assert crossover(x, y, split=3, w=1.0, mixing="slerp") == pytest.approx(x)
    assert crossover(x, y, split=0, w=1.0, mixing="slerp") == pytest.approx(y)


def _scores(x):
    return np.clip((x - 0.5) * 2, 0, 1)


def evaluate(c):
    s = _scores(c.x)
    return Outcome((float(s.mean()),), s)


def best(told):
    return max(float(_scores(x).mean()) for _, x in told)


def test_child_replaces_the_weakest_member_only_when_its_shared_fitness_is_higher():
    space = SpaceInfo(np.zeros(3), np.ones(3))
    s = make_searcher("m2n2", space, {"archive_size": 2}, seed=0)
    a, b = s.ask(2)
    s.tell(a.id, Outcome((1.0,), np.array([1.0, 1.0, 0.0])))
    s.tell(b.id, Outcome((0.5,), np.array([0.0, 0.0, 1.0])))
    c1, c2 = s.ask(2)
    assert c1.meta["phase"] == "child" and sorted(c1.meta["parents"]) == [a.id, b.id]
    s.tell(c1.id, Outcome((0.3,), np.array([1.0, 0.0, 0.0])))     # weaker than both: dropped
    assert [m["id"] for m in s.archive] == [a.id, b.id]
    s.tell(c2.id, Outcome((0.9,), np.array([1.0, 1.0, 1.0])))     # beats b (shares its item)
    assert [m["id"] for m in s.archive] == [a.id, c2.id]


def test_a_child_that_ties_the_weakest_member_replaces_it():
    """As in the paper (argmin over archive + child picks a member on ties): neutral drift."""
    s = make_searcher("m2n2", SpaceInfo(np.zeros(3), np.ones(3)), {"archive_size": 2}, seed=0)
    a, b = s.ask(2)
    s.tell(a.id, Outcome((0.6,), np.array([1.0, 1.0, 0.0])))
    s.tell(b.id, Outcome((0.3,), np.array([0.0, 0.0, 1.0])))
    c = s.ask(1)[0]
    s.tell(c.id, Outcome((0.3,), np.array([0.0, 0.0, 1.0])))       # same items as b: equal share
    assert [m["id"] for m in s.archive] == [a.id, c.id]


def test_without_attraction_the_second_parent_is_drawn_by_fitness():
    """The paper's ablation: both parents by shared fitness (a member scoring nothing is never picked)."""
    s = make_searcher("m2n2", SpaceInfo(np.zeros(3), np.ones(3)), {"archive_size": 3, "attraction": False}, seed=0)
    a, b, z = s.ask(3)
    s.tell(a.id, Outcome((0.6,), np.array([1.0, 1.0, 0.0])))
    s.tell(b.id, Outcome((0.3,), np.array([0.0, 0.0, 1.0])))
    s.tell(z.id, Outcome((0.0,), np.zeros(3)))
    parents = [c.meta["parents"] for c in s.ask(40)]
    assert all(sorted(p) == [a.id, b.id] for p in parents)


EXPERTS = [np.where(np.arange(12) // 3 == k, 1.0, 0.0) for k in range(4)]
EXPERT_SPACE = SpaceInfo(np.zeros(12), np.ones(12), x0=EXPERTS[0], initial=tuple(EXPERTS[1:]))


@pytest.mark.parametrize("seed", [0, 1, 3])
def test_merging_specialists_beats_every_parent_and_the_no_split_ablation(seed):
    """Four experts each solve a quarter of the items (score 0.25); crossover must combine them."""
    m2n2 = best(drive(make_searcher("m2n2", EXPERT_SPACE, {"archive_size": 4}, seed), evaluate, 300))
    plain = best(drive(make_searcher("m2n2", EXPERT_SPACE, {"archive_size": 4, "split": False,
                                                            "attraction": False}, seed), evaluate, 300))
    assert m2n2 >= 0.45 and m2n2 > plain


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_with_mutation_from_random_points_it_beats_random_search(seed):
    space = SpaceInfo(np.zeros(12), np.ones(12))
    m2n2 = best(drive(make_searcher("m2n2", space, {"archive_size": 16, "include_x0": False,
                                                   "mutation_std": 0.02}, seed), evaluate, 800))
    rnd = best(drive(make_searcher("random", space, {"include_start": False}, seed), evaluate, 800))
    assert m2n2 > rnd + 0.15      # over 20 seeds: 0.83 vs 0.56 on average


@pytest.mark.slow
def test_digits_from_scratch_beats_the_best_random_initialisation():
    from threadpoolctl import threadpool_limits

    from evomerge.digits.net import DigitsTask

    task = DigitsTask()
    init = [task.init_weights(np.random.default_rng([0, i])) for i in range(10)]
    space = SpaceInfo(-3 * np.ones(task.dim), 3 * np.ones(task.dim), x0=init[0], initial=tuple(init[1:]))
    s = make_searcher("m2n2", space, {"archive_size": 10, "mutation_std": 0.02}, seed=0)

    def score(c):
        items = task.item_scores(c.x)
        return Outcome((float(items.mean()),), items)

    with threadpool_limits(1):
        drive(s, score, 400)
        start = max(task.accuracy(w, "test") for w in init)
        evolved = task.accuracy(s.best()["x"], "test")
    assert evolved > start + 0.05

"""Random and grid baselines: inside the box, budgets honoured, the grid covers every corner."""

from __future__ import annotations

import numpy as np

from evomerge.search import Outcome, SpaceInfo, make_searcher

SPACE = SpaceInfo(np.array([0.0, -1.0]), np.array([1.0, 1.0]), x0=np.array([0.1, 0.2]))


def test_random_starts_at_x0_stays_in_bounds_and_stops_at_its_budget():
    s = make_searcher("random", SPACE, {"budget": 50}, seed=3)
    got = s.ask(80)
    assert len(got) == 50 and s.done and s.ask(1) == []
    assert got[0].x.tolist() == [0.1, 0.2]
    xs = np.array([c.x for c in got])
    assert (xs >= SPACE.lower).all() and (xs <= SPACE.upper).all() and len(np.unique(xs[:, 0])) == 50


def test_grid_enumerates_every_point_once_including_the_corners():
    s = make_searcher("grid", SPACE, {"budget": 30}, seed=0)     # densest grid within 30: 5 x 5
    got = s.ask(100)
    pts = {tuple(np.round(c.x, 9)) for c in got}
    assert len(got) == len(pts) == 25 and s.done
    assert {(0.0, -1.0), (1.0, 1.0), (0.5, 0.0)} <= pts
    for c in got:
        s.tell(c.id, Outcome((float(-c.x[0]),)))
    assert s.best == (-0.0,)

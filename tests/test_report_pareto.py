"""Pareto sets and hypervolumes against fronts computed by hand and a brute-force grid count."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from evomerge.errors import EvomergeError
from evomerge.report.pareto import default_reference, front_progress, hypervolume, non_dominated

MAX2 = ["maximize", "maximize"]


def test_non_dominated_keeps_trade_offs_and_ties():
    pts = [(1, 5), (2, 4), (3, 3), (2, 2), (0, 6), (3, 3)]
    assert non_dominated(pts, MAX2).tolist() == [0, 1, 2, 4, 5]
    # minimized: (2,2) beats (2,4) and (3,3); (1,5) and (0,6) each win on x
    assert non_dominated(pts, ["minimize", "minimize"]).tolist() == [0, 3, 4]
    # mixed: maximize x, minimize y
    assert non_dominated(pts, ["maximize", "minimize"]).tolist() == [2, 3, 5]


def test_hypervolume_2d_by_hand():
    pts = [(1, 5), (2, 4), (3, 3), (2, 2), (0, 6)]
    # boxes from (0,0): 3x3 + 2x1 + 1x1 (the (0,6) box has no width, (2,2) is inside (2,4)'s)
    assert hypervolume(pts, MAX2, reference=(0, 0)) == pytest.approx(12.0)
    mins = [(1, 9), (5, 5), (9, 1)]
    assert hypervolume(mins, ["minimize", "minimize"], reference=(10, 10)) == pytest.approx(9 + 20 + 4)
    assert hypervolume([(2, 4)], ["maximize", "minimize"], reference=(0, 10)) == pytest.approx(12.0)
    # points not strictly better than the reference add nothing
    assert hypervolume([(-1, 5), (3, 0)], MAX2, reference=(0, 0)) == 0.0


def test_hypervolume_3d_by_inclusion_exclusion():
    cube = ["maximize"] * 3
    assert hypervolume([(1, 2, 3)], cube, reference=(0, 0, 0)) == pytest.approx(6.0)
    # three 2x1x1 boxes: 3*2 - 3*1 (pairwise overlaps) + 1 (common unit cube)
    assert hypervolume([(2, 1, 1), (1, 2, 1), (1, 1, 2)], cube, reference=(0, 0, 0)) == pytest.approx(4.0)
    assert hypervolume([(3, 3, 3), (1, 1, 1)], cube, reference=(0, 0, 0)) == pytest.approx(27.0)


def _grid_volume(points: np.ndarray) -> int:
    """Unit cells of [0, max]^k dominated by some integer point (maximize, reference 0)."""
    k = points.shape[1]
    ranges = [range(int(points[:, j].max())) for j in range(k)]
    return sum(1 for cell in itertools.product(*ranges) if np.any(np.all(points >= np.array(cell) + 1, axis=1)))


@pytest.mark.parametrize("k,n", [(2, 12), (3, 10), (4, 7)])
def test_hypervolume_matches_grid_count(k, n):
    rng = np.random.default_rng(k * 100 + n)
    for _ in range(5):
        pts = rng.integers(1, 6, size=(n, k)).astype(float)
        assert hypervolume(pts, ["maximize"] * k, reference=[0] * k) == pytest.approx(_grid_volume(pts))


def test_default_reference_is_the_worst_point_pushed_out_by_a_tenth_of_the_range():
    pts = [(1, 5), (3, 1)]
    assert default_reference(pts, MAX2) == pytest.approx([0.8, 0.6])
    assert default_reference(pts, ["minimize", "minimize"]) == pytest.approx([3.2, 5.4])
    assert default_reference([(2, 2)], MAX2) == pytest.approx([1.0, 1.0])
    # with the default reference every front point contributes volume: two boxes minus overlap
    assert hypervolume(pts, MAX2) == pytest.approx(2.2 * 0.4 + 0.2 * 4.4 - 0.2 * 0.4)


def test_front_progress_tracks_volume_and_departures():
    pts = [(1, 1), (2, 2), (0.5, 3), (3, 0.5), (1.5, 1.5)]
    volumes, left = front_progress(pts, MAX2, reference=(0, 0))
    assert volumes == pytest.approx([1.0, 4.0, 4.5, 5.0, 5.0])
    # (1,1) leaves when (2,2) arrives; (1.5,1.5) is dominated on arrival; the rest stay
    assert left == [1, -1, -1, -1, 4]
    assert all(b >= a for a, b in zip(volumes, volumes[1:]))


def test_bad_inputs_are_user_errors():
    with pytest.raises(EvomergeError, match="direction"):
        non_dominated([(1, 2)], ["maximize", "up"])
    with pytest.raises(EvomergeError, match="directions"):
        hypervolume([(1, 2, 3)], MAX2)
    with pytest.raises(EvomergeError, match="reference point"):
        hypervolume([(1, 2)], MAX2, reference=(0, 0, 0))

"""Pareto fronts: non-dominated sets, exact hypervolume, and how the front grew over a run.

Every function takes points as rows of an (n, k) array plus one direction per column
("maximize" or "minimize"). Internally everything is turned into minimization by negating
maximized columns, so dominance and volume have a single definition.

Hypervolume reference point: unless the caller passes one, :func:`default_reference` takes,
per objective, the worst value over *all* given points pushed a further 10% of that
objective's observed range toward "worse" (1.0 when the range is 0). Computing it once from
every evaluated trial keeps the hypervolume of earlier fronts comparable with later ones,
so the progress curve is monotone. The volume is exact for any number of objectives
(recursive slicing); it is meant for fronts of up to a few hundred points with k <= 3.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from evomerge.errors import EvomergeError
from evomerge.search.pareto import hypervolume_2d, pareto_mask

DIRECTIONS = ("maximize", "minimize")


def _as_min(points: np.ndarray | Sequence[Sequence[float]], directions: Sequence[str]) -> np.ndarray:
    """Points as a float (n, k) array in which smaller is better in every column."""
    arr = np.asarray(points, dtype=np.float64)
    if arr.ndim != 2:
        arr = arr.reshape(len(arr), -1)
    if arr.shape[1] != len(directions):
        raise EvomergeError(f"objectives: {arr.shape[1]} columns but {len(directions)} directions")
    signs = np.array([_sign(d) for d in directions], dtype=np.float64)
    return arr * signs


def _sign(direction: str) -> float:
    if direction not in DIRECTIONS:
        raise EvomergeError(f"objective direction: {direction!r} is not 'maximize' or 'minimize'")
    return -1.0 if direction == "maximize" else 1.0


def _non_dominated_min(arr: np.ndarray) -> np.ndarray:
    """Indices of rows not dominated by any other row (minimization); duplicates all kept."""
    return np.flatnonzero(pareto_mask(-arr))


def non_dominated(points, directions: Sequence[str]) -> np.ndarray:
    """Indices (ascending) of the points no other point dominates.

    A point dominates another when it is at least as good in every objective and strictly
    better in one. Equal points do not dominate each other, so ties are all kept.
    """
    arr = _as_min(points, directions)
    if len(arr) == 0:
        return np.zeros(0, dtype=np.int64)
    return _non_dominated_min(arr)


def default_reference(points, directions: Sequence[str]) -> np.ndarray:
    """The documented default reference point (see the module docstring), in user units."""
    arr = _as_min(points, directions)
    if len(arr) == 0:
        raise EvomergeError("hypervolume: no points to derive a reference point from")
    worst = arr.max(axis=0)
    span = arr.max(axis=0) - arr.min(axis=0)
    margin = np.where(span > 0, 0.1 * span, 1.0)
    signs = np.array([_sign(d) for d in directions])
    return (worst + margin) * signs


def _hv_min(arr: np.ndarray, ref: np.ndarray) -> float:
    """Exact volume dominated by ``arr`` and bounded by ``ref`` (minimization, all < ref)."""
    if len(arr) == 0:
        return 0.0
    if arr.shape[1] == 1:
        return float(ref[0] - arr[:, 0].min())
    if arr.shape[1] == 2:  # the searchers' sweep, on the mirrored (maximized) points
        return hypervolume_2d(-arr, -ref)
    # slice along the last objective: between consecutive values, the points at or below
    # the slice project onto a (k-1)-dimensional front whose volume is constant there
    order = np.argsort(arr[:, -1], kind="stable")
    arr = arr[order]
    volume = 0.0
    for i in range(len(arr)):
        upper = arr[i + 1, -1] if i + 1 < len(arr) else ref[-1]
        depth = upper - arr[i, -1]
        if depth <= 0:
            continue
        head = arr[: i + 1, :-1]
        volume += depth * _hv_min(head[_non_dominated_min(head)], ref[:-1])
    return float(volume)


def hypervolume(points, directions: Sequence[str], reference=None) -> float:
    """Volume of objective space dominated by ``points`` and bounded by ``reference``.

    Points that are not strictly better than the reference in every objective add nothing.
    """
    arr = _as_min(points, directions)
    ref = default_reference(points, directions) if reference is None else np.asarray(reference, float)
    if ref.shape != (len(directions),):
        raise EvomergeError(f"reference point: needs {len(directions)} values, got {ref.size}")
    ref = ref * np.array([_sign(d) for d in directions])
    arr = arr[np.all(arr < ref, axis=1)]
    if len(arr) == 0:
        return 0.0
    return _hv_min(arr[_non_dominated_min(arr)], ref)


def front_progress(points, directions: Sequence[str], reference=None) -> tuple[list[float], list[int]]:
    """How the front grew: hypervolume after each point (in the given order), and for each
    point the step at which it left the front (-1 while it is still on the final front;
    a dominated-from-birth point leaves at its own step)."""
    arr = _as_min(points, directions)
    if len(arr) == 0:
        return [], []
    ref = default_reference(points, directions) if reference is None else np.asarray(reference, float)
    volumes: list[float] = []
    left = [-1] * len(arr)
    front: list[int] = []
    for step in range(len(arr)):
        candidates = front + [step]
        kept = [candidates[i] for i in _non_dominated_min(arr[candidates])]
        for i in set(candidates) - set(kept):
            left[i] = step
        front = kept
        volumes.append(hypervolume(np.asarray(points, float)[front], directions, ref))
    return volumes, left

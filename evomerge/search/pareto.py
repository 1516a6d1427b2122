"""Pareto helpers for maximized objectives: non-dominated sorting, crowding, 2-D hypervolume."""

from __future__ import annotations

import numpy as np


def dominates(a: np.ndarray, b: np.ndarray) -> bool:
    """a is at least as good everywhere and strictly better somewhere (maximizing)."""
    return bool(np.all(a >= b) and np.any(a > b))


def non_dominated_ranks(f: np.ndarray) -> np.ndarray:
    """Front index of every row (0 = non-dominated), by repeatedly peeling the front."""
    f = np.asarray(f, dtype=float)
    ge = np.all(f[:, None, :] >= f[None, :, :], axis=2)
    gt = np.any(f[:, None, :] > f[None, :, :], axis=2)
    dom = (ge & gt).astype(np.int64)               # dom[i, j] = 1: i dominates j
    count = dom.sum(axis=0)                        # how many dominate j
    ranks = np.full(len(f), -1)
    left = np.ones(len(f), dtype=bool)
    r = 0
    while left.any():
        front = left & (count == 0)
        ranks[front] = r
        left &= ~front
        count = count - front.astype(np.int64) @ dom
        r += 1
    return ranks


def pareto_mask(f: np.ndarray) -> np.ndarray:
    return non_dominated_ranks(f) == 0 if len(f) else np.zeros(0, dtype=bool)


def crowding_distance(f: np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance within one front (boundary points get infinity)."""
    n, m = f.shape
    d = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for k in range(m):
        order = np.argsort(f[:, k], kind="stable")
        span = f[order[-1], k] - f[order[0], k]
        d[order[0]] = d[order[-1]] = np.inf
        if span > 0:
            d[order[1:-1]] += (f[order[2:], k] - f[order[:-2], k]) / span
    return d


def hypervolume_2d(f: np.ndarray, ref: np.ndarray) -> float:
    """Area dominated by the points of ``f`` (2 maximized objectives) and bounded below by ``ref``."""
    f = np.asarray(f, dtype=float)
    if f.ndim != 2 or f.shape[1] != 2:
        raise ValueError("hypervolume_2d needs points with exactly 2 objectives")
    pts = f[np.all(f > ref, axis=1)]
    if not len(pts):
        return 0.0
    pts = pts[np.argsort(-pts[:, 0], kind="stable")]   # sweep x downward; dominated points add nothing
    area, prev_y = 0.0, ref[1]
    for x, y in pts:
        if y > prev_y:
            area += (x - ref[0]) * (y - prev_y)
            prev_y = y
    return float(area)

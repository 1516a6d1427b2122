"""Which entries of a task vector survive sparsification, as a band on |tau|: magnitude trim
(TIES) keeps the largest, Model Breadcrumbs drops the largest outliers and the smallest.
Thresholds are exact order statistics of |tau| (ties at a threshold are all kept); DARE's
random drop is a seeded draw instead (see ops/fused/rules.py)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

SAMPLE = 1 << 16
Kth = Callable[[int], float]  # k -> the k-th smallest |tau| (1-based)


def kth_smallest(a: torch.Tensor, k: int) -> float:
    """k-th smallest entry of a (1-based), exactly.

    Large tensors: a fixed-stride sample brackets the answer, then only the entries inside the
    bracket go through `kthvalue` (a few cheap comparison passes instead of a selection over
    everything); if the bracket misses, the full selection runs. Same value either way."""
    flat = a.reshape(-1)
    n = flat.numel()
    if n <= 16 * SAMPLE:
        return torch.kthvalue(flat, k).values.item()
    sample = flat[:: n // SAMPLE]
    m = sample.numel()
    margin = 8 * m**0.5 / 2 + 16  # ~8 standard deviations of the sample's rank error
    lo_i = max(1, min(m, int(k / n * m - margin)))
    hi_i = max(1, min(m, int(k / n * m + margin) + 1))
    lo = torch.kthvalue(sample, lo_i).values if k / n * m - margin > 1 else None
    hi = torch.kthvalue(sample, hi_i).values if k / n * m + margin < m else None
    below = int((flat < lo).sum()) if lo is not None else 0
    if lo is None and hi is None:
        band = flat
    elif lo is None:
        band = flat[flat <= hi]
    elif hi is None:
        band = flat[flat >= lo]
    else:
        band = flat[(flat >= lo) & (flat <= hi)]
    if below < k <= below + band.numel():
        return torch.kthvalue(band, k - below).values.item()
    return torch.kthvalue(flat, k).values.item()


KEEP_ALL = (-math.inf, math.inf)
KEEP_NONE = (math.inf, -math.inf)


def magnitude_band(n: int, density: float, kth: Kth) -> tuple[float, float]:
    """Keep the max(1, int(density * n)) largest-magnitude entries (all when density >= 1)."""
    if density >= 1 or n == 0:
        return KEEP_ALL
    if density <= 0:
        return KEEP_NONE
    return kth(n - max(1, int(density * n)) + 1), math.inf


def outlier_band(n: int, density: float, gamma: float, kth: Kth) -> tuple[float, float]:
    """Model Breadcrumbs: drop the int(gamma*n) largest entries, then the smallest, keeping
    int(density * n) in between (fewer outliers dropped when both do not fit)."""
    if density >= 1 or n == 0:
        return KEEP_ALL
    target = int(density * n)
    if target == 0:
        return KEEP_NONE
    n_bot = max(0, n - target - int(gamma * n))
    return (kth(n_bot + 1) if n_bot > 0 else -math.inf), kth(n_bot + target)

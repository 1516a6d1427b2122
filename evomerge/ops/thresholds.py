"""Exact magnitude thresholds for TIES and Breadcrumbs without a sorted copy of anything.

A threshold is the r-th smallest |x_k| of a task vector (an exact order statistic: the kept
set must be exactly the one a full sort gives). Non-negative float32 values sort like their
bit patterns read as integers, so the r-th smallest value's pattern is found in two counting
passes: the top 16 bits' histogram narrows it to one bin, the low 16 bits' histogram of that
bin's entries gives it exactly. The first histogram depends only on the models, not on the
recipe, so resident sources keep it (256 KB per tensor and source); each candidate then costs
one refining pass over the inputs, fused for all sources and both ends of a band.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence

import numpy as np
import torch

from evomerge.ops.fused import kernel_dtype, magnitude_histograms, refine_histograms, task_vector
from evomerge.ops.sparsify import kth_smallest

SMALL = 1 << 16  # below this many entries a direct selection is cheaper than two counting passes


class HistogramCache:
    """Cumulative top-16-bit histograms of |x| per (tensor, base, source), kept by resident
    sources for the whole run: a recipe's thresholds then cost one pass, not two."""

    def __init__(self) -> None:
        self._cum: dict[tuple, np.ndarray] = {}

    def get(self, key: Hashable) -> np.ndarray | None:
        return self._cum.get(key)

    def put(self, key: Hashable, cum: np.ndarray) -> None:
        self._cum[key] = cum

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self._cum.values())


class TensorMemo:
    """The cache as one tensor's merge sees it: source k's histogram under keys[k]."""

    def __init__(self, cache: HistogramCache, keys: Sequence[Hashable]) -> None:
        self.cache, self.keys = cache, list(keys)

    def get(self, k: int) -> np.ndarray | None:
        return self.cache.get(self.keys[k])

    def put(self, k: int, cum: np.ndarray) -> None:
        self.cache.put(self.keys[k], cum)


def _cumulative(counts: np.ndarray, n: int) -> np.ndarray:
    cum = np.cumsum(counts, axis=-1)
    return cum.astype(np.uint32) if n < (1 << 32) else cum


def kth_magnitudes(base: torch.Tensor | None, sources: Sequence[torch.Tensor], requests: Sequence[tuple[int, int]],
                   memo: TensorMemo | None = None) -> dict[tuple[int, int], float]:
    """{(k, r): the r-th smallest (1-based) |x_k|} for every request, exactly; x_k is source k's
    task vector against `base` in float32 (or the source itself without a base)."""
    if not requests:
        return {}
    n = sources[0].numel()
    if n <= SMALL or kernel_dtype(base, sources) is None:  # small, or not on the CPU kernels' dtypes
        out = {}
        for k in sorted({k for k, _ in requests}):
            a = task_vector(base, sources[k]).abs().reshape(-1)
            out.update({(kk, r): kth_smallest(a, r) for kk, r in requests if kk == k})
        return out
    K = len(sources)
    cums = [memo.get(k) if memo is not None else None for k in range(K)]
    if any(c is None for c in cums):
        counts = magnitude_histograms(base, sources)
        for k in range(K):
            if cums[k] is None:
                cums[k] = _cumulative(counts[k], n)
                if memo is not None:
                    memo.put(k, cums[k])
    located = {}  # request -> (top 16 bits, rank within that bin)
    for k, r in requests:
        top = int(np.searchsorted(cums[k], r, side="left"))
        located[(k, r)] = (top, r - (int(cums[k][top - 1]) if top > 0 else 0))
    out: dict[tuple[int, int], float] = {}
    pending = dict(located)
    while pending:  # one pass refines up to two bins per source (both ends of a band)
        bins = np.full((K, 2), -1, dtype=np.int64)
        for (k, _), (top, _) in pending.items():
            if top not in bins[k]:
                free = np.flatnonzero(bins[k] < 0)
                if free.size:
                    bins[k, free[0]] = top
        low = np.cumsum(refine_histograms(base, sources, bins), axis=-1)
        for (k, r), (top, rank) in list(pending.items()):
            slot = np.flatnonzero(bins[k] == top)
            if slot.size:
                bits = (top << 16) | int(np.searchsorted(low[k, slot[0]], rank, side="left"))
                out[(k, r)] = float(np.array([bits], dtype=np.uint32).view(np.float32)[0])
                del pending[(k, r)]
    return out


def resolve_bands(n: int, band: Callable[[int, Callable[[int], float]], tuple[float, float]], K: int,
                  kth: Callable[[list[tuple[int, int]]], dict[tuple[int, int], float]]) -> list[tuple[float, float]]:
    """Each source's (lo, hi) band, `band(k, kth_of_k)` asked twice: once to learn which ranks
    it needs, once with their values (all resolved in one call to `kth`)."""
    wanted: list[tuple[int, int]] = []
    for k in range(K):
        band(k, lambda r, k=k: wanted.append((k, r)) or 0.0)
    values = kth(sorted(set(wanted)))
    return [band(k, lambda r, k=k: values[(k, r)]) for k in range(K)]

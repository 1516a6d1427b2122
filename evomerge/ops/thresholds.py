"""Exact magnitude thresholds for TIES and Breadcrumbs without a sorted copy of anything.

A threshold is the r-th smallest |x_k| of a task vector (an exact order statistic: the kept
set must be exactly the one a full sort gives). Non-negative float32 values sort like their
bit patterns read as integers, so the r-th smallest value's pattern is found in two counting
passes: the top 16 bits' histogram narrows it to one bin, the low 16 bits' histogram of that
bin's entries gives it exactly. The first histogram (with each bin's count of entries whose low
bits are zero: the bin's smallest value) depends only on the models, not on the recipe, so
resident sources keep it (512 KB per tensor and source). A rank that falls on a bin's smallest
value is then known at once; the task vectors of bf16 sources are differences of 8-bit
significands, so they almost always fit in the top 16 bits and need no second pass. Otherwise
each candidate costs one refining pass, fused for all sources.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence

import numpy as np
import torch

from evomerge.ops.fused import kernel_dtype, magnitude_histograms, refine_histograms
from evomerge.ops.fused.reference import task_vector
from evomerge.ops.sparsify import kth_smallest

SMALL = 1 << 16  # below this many entries a direct selection is cheaper than two counting passes


class HistogramCache:
    """Per (tensor, base, source), the top-16-bit histogram of |x| (cumulative, with each bin's
    count of zero-low-bit entries), kept by resident sources for the whole run: a recipe's
    thresholds then cost at most one pass, and none when they fall on a bin's smallest value
    (as they almost always do for bf16 sources, whose task vectors fit in 16 bits)."""

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


def _summary(counts: np.ndarray, n: int) -> np.ndarray:
    """[2, 2**16]: the cumulative count of entries by top 16 bits, and each bin's count of
    entries whose low 16 bits are zero (its smallest value, exactly)."""
    dtype = np.uint32 if n < (1 << 32) else np.int64
    return np.stack([np.cumsum(counts[0]), counts[1]]).astype(dtype)


def index_magnitudes(base: torch.Tensor, sources: Sequence[torch.Tensor], memo: TensorMemo) -> None:
    """Build and keep the first histograms of one tensor now (worker start-up), so that no
    candidate pays for them."""
    n = sources[0].numel()
    if n > SMALL and kernel_dtype(base, sources) is not None and any(memo.get(k) is None for k in range(len(sources))):
        counts = magnitude_histograms(base, sources)
        for k in range(len(sources)):
            memo.put(k, _summary(counts[k], n))


def _float(bits: int) -> float:
    return float(np.array([bits], dtype=np.uint32).view(np.float32)[0])


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
    summaries = [memo.get(k) if memo is not None else None for k in range(K)]
    if any(x is None for x in summaries):
        counts = magnitude_histograms(base, sources)
        for k in range(K):
            if summaries[k] is None:
                summaries[k] = _summary(counts[k], n)
                if memo is not None:
                    memo.put(k, summaries[k])
    out: dict[tuple[int, int], float] = {}
    pending: dict[tuple[int, int], tuple[int, int]] = {}  # request -> (top bits, rank among the bin's nonzero-low entries)
    for k, r in requests:
        cum, zeros = summaries[k]
        top = int(np.searchsorted(cum, r, side="left"))
        rank = r - (int(cum[top - 1]) if top > 0 else 0)
        if rank <= int(zeros[top]):  # the bin's smallest value: its low bits are zero
            out[(k, r)] = _float(top << 16)
        else:
            pending[(k, r)] = (top, rank - int(zeros[top]))
    while pending:  # one refining pass per distinct bin of each source
        bins = np.full(K, -1, dtype=np.int64)
        for (k, _), (top, _) in pending.items():
            if bins[k] < 0:
                bins[k] = top
        low = np.cumsum(refine_histograms(base, sources, bins), axis=-1)
        for (k, r), (top, rank) in list(pending.items()):
            if bins[k] == top:
                out[(k, r)] = _float((top << 16) | int(np.searchsorted(low[k], rank, side="left")))
                del pending[(k, r)]
    return out


def resolve_bands(band: Callable[[int, Callable[[int], float]], tuple[float, float]], K: int,
                  kth: Callable[[list[tuple[int, int]]], dict[tuple[int, int], float]]) -> list[tuple[float, float]]:
    """Each source's (lo, hi) band, `band(k, kth_of_k)` asked twice: once to learn which ranks
    it needs, once with their values (all resolved in one call to `kth`)."""
    wanted: list[tuple[int, int]] = []
    for k in range(K):
        band(k, lambda r, k=k: wanted.append((k, r)) or 0.0)
    values = kth(sorted(set(wanted)))
    return [band(k, lambda r, k=k: values[(k, r)]) for k in range(K)]

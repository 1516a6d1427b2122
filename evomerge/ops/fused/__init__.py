"""One pass over base + sources for the task-vector methods (TIES, DARE, Breadcrumbs, task
arithmetic) and linear, reading the sources in their stored dtype.

Written as separate torch ops, convert -> subtract -> trim -> rescale -> weight -> elect sign
-> disjoint sum -> add base walks every tensor some thirty times and needs float32 copies of
every input; a search worker that materializes hundreds of candidates pays for each walk, and
at 7B cannot afford the copies. Here the per-source decisions are resolved first (which entries
survive: a magnitude band or a seeded draw; one scale per source: `rules.Rule`, `rules.Mix`),
then a single kernel reads each input once in its own dtype (float32 or bfloat16), forms the
task vectors in registers and writes the result in the output's dtype. No float32 copy of
anything exists at any time.

This module is the entry point: `combine` (one tensor, or queued in a `Batch` that runs a whole
model as one call per thread) and the counting passes behind exact thresholds
(`magnitude_histograms`, `refine_histograms`, `abs_sums`). On CPU they run kernels generated per
variant (codegen.py) and compiled once (cache.py); elsewhere (GPU, float16) `combine` runs
`reference.combine_torch`, the same arithmetic as torch ops. The two agree bit for bit (tested;
NaN payloads aside), so a recipe gives the same tensors on every path.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
import torch

from evomerge.ops.fused.cache import kernel as compiled
from evomerge.ops.fused.codegen import BINS, LANES
from evomerge.ops.fused.reference import combine_torch, keep_mask
from evomerge.ops.fused.rules import M32, Mix, Rule, fold_key

__all__ = ["Batch", "Mix", "Rule", "abs_sums", "combine", "kernel_dtype", "magnitude_histograms",
           "refine_histograms"]

MIN_SPLIT = 1 << 15  # entries per thread below which a batch is not worth splitting further
SPAN = 1 << 32  # a piece never straddles a multiple of this (the draws' salt is per piece)
KERNEL_DTYPES = {torch.float32: "f32", torch.bfloat16: "bf16"}  # what the CPU kernels read and write

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_key: tuple[int, int] = (0, 0)  # (threads, pid): a forked child builds its own pool


def _threads() -> ThreadPoolExecutor:
    global _pool, _pool_key
    key = (max(1, torch.get_num_threads()), os.getpid())
    with _lock:
        if _pool is None or _pool_key != key:
            _pool, _pool_key = ThreadPoolExecutor(key[0], thread_name_prefix="evomerge-fused"), key
        return _pool


def _pieces(sizes: Sequence[int], threads: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Tensors of `sizes` entries cut into pieces (tensor, start, stop) for `threads` threads:
    one contiguous share of the total entries per thread, cut 64-entry aligned within a
    tensor and never straddling a multiple of SPAN. Returns the pieces [P, 3] and each busy
    thread's [first, end) range of them."""
    total = sum(sizes)
    parts = max(1, min(threads, total // MIN_SPLIT))
    share = max(1, -(-total // parts))
    rows, owners, offset = [], [], 0
    for t, n in enumerate(sizes):
        cuts = {0, n, *range(SPAN, n, SPAN)}
        cuts |= {min(n, (c - offset + 63) // 64 * 64) for c in range(share, total, share) if offset < c < offset + n}
        cuts = sorted(cuts)
        for a, b in zip(cuts, cuts[1:]):
            rows.append((t, a, b))
            owners.append(min((offset + a) // share, parts - 1))
        offset += n
    bounds, first = [], 0
    for i in range(1, len(owners) + 1):
        if i == len(owners) or owners[i] != owners[first]:
            bounds.append((first, i))
            first = i
    return np.asarray(rows, dtype=np.int64).reshape(-1, 3), bounds


def _rule_arrays(rules: Sequence[Rule], K: int) -> tuple[np.ndarray, ...]:
    """The rules as the kernels' [T, K] tables (lo, hi, key, thr); the fields a kind does not
    use get neutral values (and the keys, one per two sources, trailing zeros)."""
    lo = [r.lo or (0.0,) * K for r in rules]
    hi = [r.hi or (math.inf,) * K for r in rules]
    key = [[fold_key(k) for k in r.keys] + [0] * (K - len(r.keys)) for r in rules]
    thr = [r.thr or (0,) * K for r in rules]
    return (np.array(lo, dtype=np.float32), np.array(hi, dtype=np.float32),
            np.array(key, dtype=np.uint32), np.array(thr, dtype=np.int32))


def abs_sums(row: torch.Tensor, rule: Rule, k: int) -> tuple[float, float]:
    """(sum |x|, sum of |x| over the entries source k keeps) of one float32 task vector, in
    float64: mergekit's L1 rescale. One pass on CPU; torch ops elsewhere (sums may differ in
    the last bits there, being summed in another order)."""
    if not (_cpu_contiguous(row) and row.dtype is torch.float32):
        a = row.abs()
        return a.sum(dtype=torch.float64).item(), (a * keep_mask(row, rule, k)).sum(dtype=torch.float64).item()
    kernel = compiled("l1", rule.kind)
    lo, hi, keys, thr = (a[0] for a in _rule_arrays([rule], k + 1))
    flat, total, kept = row.reshape(-1).numpy(), 0.0, 0.0
    for _, start, stop in _pieces([row.numel()], 1)[0]:  # one thread: a fixed summation order
        t, kk = kernel(flat, lo[k], hi[k], keys[k // 2], thr[k], k % 2 == 1, start, stop)
        total, kept = total + t, kept + kk
    return total, kept


def _cpu_contiguous(t: torch.Tensor) -> bool:
    return t.is_cpu and t.is_contiguous()


def kernel_dtype(base: torch.Tensor | None, sources: Sequence[torch.Tensor]) -> str | None:
    """The CPU kernels' name for the inputs' common dtype, or None if they cannot read them
    directly (another device or dtype, mixed dtypes, not contiguous)."""
    inputs = ([base] if base is not None else []) + list(sources)
    dts = {t.dtype for t in inputs}
    if len(dts) != 1 or not all(_cpu_contiguous(t) for t in inputs):
        return None
    return KERNEL_DTYPES.get(dts.pop())


def _addresses(base: torch.Tensor | None, sources: Sequence[torch.Tensor]) -> np.ndarray:
    return np.array([base.data_ptr() if base is not None else 0, *(s.data_ptr() for s in sources)], dtype=np.uint64)


def _split_run(kernel, n: int, tables: tuple, shape_of_counts: tuple, dtype=np.int32) -> np.ndarray:
    """Run a counting kernel over [0, n) split across threads, each with its own counts;
    their sum (int64)."""
    parts = max(1, min(torch.get_num_threads(), n // MIN_SPLIT))  # as _pieces splits a batch
    ranges = [(n * i // parts, n * (i + 1) // parts) for i in range(parts)]
    parts = [np.zeros(shape_of_counts, dtype=dtype) for _ in ranges]
    if len(ranges) == 1:
        kernel(*tables, parts[0], *ranges[0])
    else:
        list(_threads().map(lambda i: kernel(*tables, parts[i], *ranges[i]), range(len(ranges))))
    total = parts[0].astype(np.int64)
    for p in parts[1:]:
        total += p
    return total


def magnitude_histograms(base: torch.Tensor | None, sources: Sequence[torch.Tensor]) -> np.ndarray:
    """[K, 2, 2**16] counts of every source's |x_k| by the top 16 bits of its float32 pattern:
    all entries ([k, 0]) and those with zero low bits ([k, 1]) (CPU, float32 or bfloat16
    inputs: see kernel_dtype)."""
    dt = kernel_dtype(base, sources)
    K = len(sources)
    kernel = compiled("hist", K, base is not None, dt, False)
    packed = _split_run(kernel, sources[0].numel(), (_addresses(base, sources),), (K, LANES, BINS), np.int64)
    packed = packed.sum(axis=1)
    return np.stack([packed & M32, packed >> 32], axis=1)


def refine_histograms(base: torch.Tensor | None, sources: Sequence[torch.Tensor], bins: np.ndarray) -> np.ndarray:
    """[K, 2**16] counts, by the low 16 bits, of the entries of |x_k| whose top 16 bits are
    bins[k] (-1 for none) and whose low 16 bits are not zero."""
    dt = kernel_dtype(base, sources)
    K = len(sources)
    kernel = compiled("hist", K, base is not None, dt, True)
    return _split_run(kernel, sources[0].numel(), (_addresses(base, sources), bins.astype(np.int64)), (K, BINS))


class Batch:
    """combine() calls gathered over a model's tensors and run as one parallel pass by run().

    Called per tensor, each pass pays ~0.3 ms of dispatch and thread hand-off: a third of a
    30M-parameter model's merge. Gathered, a model is one kernel call per thread (per kernel
    variant, usually one). Whoever adds a job promises its tensors stay put until run()."""

    def __init__(self) -> None:
        self._jobs: dict[tuple, list[_Job]] = {}

    def add(self, variant: tuple, job: _Job) -> None:
        self._jobs.setdefault(variant, []).append(job)

    def run(self) -> None:
        jobs, self._jobs = self._jobs, {}
        for variant, group in jobs.items():
            _run(variant, group)


class _Job(NamedTuple):
    base: torch.Tensor | None
    sources: Sequence[torch.Tensor]
    mix: Mix
    out: torch.Tensor


def _run(variant: tuple, jobs: Sequence[_Job]) -> None:
    """One kernel variant over many tensors: their addresses and rules as tables, then one
    call per thread."""
    K = variant[0]
    addr = np.array([[j.base.data_ptr() if j.base is not None else 0,
                      *(s.data_ptr() for s in j.sources), j.out.data_ptr()] for j in jobs], dtype=np.uint64)
    lo, hi, key, thr = _rule_arrays([j.mix.rule for j in jobs], K)
    scale = np.array([j.mix.scales for j in jobs], dtype=np.float32).reshape(-1, K)
    w = np.array([j.mix.weights or (0.0,) * K for j in jobs], dtype=np.float32).reshape(-1, K)
    lam = np.array([j.mix.lam for j in jobs], dtype=np.float32)
    pieces, bounds = _pieces([j.out.numel() for j in jobs], torch.get_num_threads())
    kernel = compiled(*variant)
    tables = (addr, lo, hi, key, thr, scale, w, lam, pieces)
    if len(bounds) == 1:
        kernel(*tables, *bounds[0])
    elif bounds:
        list(_threads().map(lambda b: kernel(*tables, *b), bounds))


def combine(base: torch.Tensor | None, sources: Sequence[torch.Tensor], mix: Mix, out: torch.Tensor,
            batch: Batch | None = None) -> torch.Tensor:
    """Write the merged tensor into `out` (any float dtype, shaped like the sources).

    `base`: task vectors are taken against it and it is added last, or None (linear);
    `sources`: K tensors in their stored dtype. With `batch`, a CPU pass is queued there and
    `out` is written at batch.run()."""
    in_dt = kernel_dtype(base, sources)
    out_dt = KERNEL_DTYPES.get(out.dtype) if _cpu_contiguous(out) else None
    if in_dt is None or out_dt is None:
        return combine_torch(base, sources, mix, out)
    rule = mix.rule
    kind = "floor" if rule.kind == "band" and all(h == math.inf for h in rule.hi) else rule.kind
    variant = (len(sources), kind, mix.consensus, mix.normalize, base is not None, in_dt, out_dt)
    job = _Job(base, tuple(sources), mix, out)
    if batch is not None:
        batch.add(variant, job)
    else:
        _run(variant, [job])
    return out

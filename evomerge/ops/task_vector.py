"""Task-vector methods (task arithmetic, TIES, DARE, Model Breadcrumbs) as one computation:

    tau_k = theta_k - theta_base            (per source, in float32)
    keep_k: which entries survive           (magnitude | random | outliers; see sparsify.py)
    t_k = keep_k * tau_k * w_k * rescale_k
    consensus (TIES): elect sign(sum_k t_k) per entry (>= 0 counts as +), keep agreeing entries
    mixed = sum_k t_k                        (divided by the weight that voted, if normalize)
    theta = theta_base + lambda * mixed

The per-source decisions (thresholds, draws, scales) are resolved here, then fused.combine
makes one pass over base and sources in their stored dtype. DARE draws from hashes keyed by
(recipe seed, tensor name, pair of sources), so results do not depend on tensor order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch

from evomerge.ops import MethodSpec, TensorParams, get_method
from evomerge.ops.fused import Batch, Mix, Rule, abs_sums, combine, kernel_dtype
from evomerge.ops.fused.reference import task_vector
from evomerge.ops.fused.rules import DRAW_BITS, draw_threshold, hashes_for
from evomerge.ops.sparsify import magnitude_band, outlier_band
from evomerge.ops.thresholds import TensorMemo, kth_magnitudes, resolve_bands
from evomerge.ops.workspace import Workspace


def tensor_seed(seed: int, name: str, k: int) -> int:
    """A stable 63-bit seed for hash k of tensor `name` (DARE: one per pair of sources;
    independent of merge order)."""
    digest = hashlib.blake2b(f"{seed}:{name}:{k}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def keep_rule(base: torch.Tensor, sources: Sequence[torch.Tensor], spec: MethodSpec, p: TensorParams,
              memo: TensorMemo | None) -> Rule:
    """Which entries of each task vector survive. Magnitude thresholds are exact order
    statistics (thresholds.py); `memo` keeps their first counting pass across candidates."""
    how = spec.sparsify
    if how is None or all(d >= 1 for d in p.densities):
        return Rule("dense")
    K, n = len(sources), sources[0].numel()
    if how == "random":
        return Rule("draw", keys=tuple(tensor_seed(p.seed, p.name, m) for m in range(hashes_for(K))),
                    thr=tuple(draw_threshold(d) for d in p.densities))

    def band(k, kth):
        d = p.densities[k]
        return magnitude_band(n, d, kth) if how == "magnitude" else outlier_band(n, d, p.gammas[k], kth)

    bands = resolve_bands(band, K, lambda requests: kth_magnitudes(base, sources, requests, memo))
    return Rule("band", lo=tuple(b[0] for b in bands), hi=tuple(b[1] for b in bands))


def _rescale(base: torch.Tensor, sources: Sequence[torch.Tensor], rule: Rule, p: TensorParams) -> list[float]:
    """The factor restoring each sparsified task vector's size: 1/density (for draws, the
    density they keep: the 16-bit threshold over 2**16), or mergekit's L1 rule (match the L1
    norm before trimming), or 1."""
    how = p.globals["rescale"]
    out = []
    for k, d in enumerate(p.densities or [1.0] * len(sources)):
        f = 1.0
        if d >= 1 or rule.kind == "dense":
            pass  # not sparsified
        elif how == "inverse_density" and rule.kind == "draw":  # the density the draws keep
            f = (1 << DRAW_BITS) / rule.thr[k] if rule.thr[k] else 1.0
        elif how == "inverse_density" and d > 0:
            f = 1.0 / d
        elif how == "l1":
            before, after = abs_sums(task_vector(base, sources[k]).contiguous(), rule, k)  # one tensor's scratch
            if before >= 1e-7 and after >= 1e-7:
                f = before / after
        out.append(f)
    return out


def weight_total(weights: Sequence[float]) -> float:
    """What `normalize` divides by: the sum of the weights (1 if it is zero)."""
    total = float(sum(weights))
    return total if abs(total) >= 1e-8 else 1.0


def kernel_inputs(base: torch.Tensor | None, tensors: Sequence[torch.Tensor], ws: Workspace
                  ) -> tuple[torch.Tensor | None, list[torch.Tensor], bool]:
    """The inputs as the CPU kernels can read them: unchanged when they can (float32 or
    bfloat16, one dtype, contiguous) or when they are not on the CPU (the torch path reads
    anything), else staged into float32 workspace buffers, one tensor's worth each.
    Returns (base, sources, staged)."""
    inputs = ([base] if base is not None else []) + list(tensors)
    if not inputs[0].is_cpu or kernel_dtype(base, tensors) is not None:
        return base, list(tensors), False
    staged = [ws.buf(f"in{i}", t.shape, t.device).copy_(t) for i, t in enumerate(inputs)]
    return (staged[0], staged[1:], True) if base is not None else (None, staged, True)


def merge(base: torch.Tensor | None, tensors: Sequence[torch.Tensor], p: TensorParams,
          ws: Workspace | None = None, *, out: torch.Tensor | None = None, memo: TensorMemo | None = None,
          batch: Batch | None = None) -> torch.Tensor:
    """The merged tensor, in `out` (any float dtype) if given, else in a float32 workspace
    buffer. Inputs are read in their stored dtype. `memo`: kept threshold histograms (resident
    sources). `batch`: with `out` given, the pass may be queued there (see fused.Batch); `out`
    is then written at its run()."""
    if base is None:
        raise ValueError(f"{p.method} needs a base tensor")
    ws = ws or Workspace()
    spec = get_method(p.method)
    base, tensors, staged = kernel_inputs(base, tensors, ws)
    if staged or out is None:  # inputs or result in workspace buffers: run now
        batch = None
    res = out if out is not None else ws.buf("acc", base.shape, base.device)
    normalize, lam = p.globals["normalize"], float(p.globals["lambda"])
    rule = keep_rule(base, tensors, spec, p, memo)
    scales = [w * f for w, f in zip(p.weights, _rescale(base, tensors, rule, p))]
    if not spec.consensus:  # fold lambda and the normalization into each source's scale
        scales = [s * lam / (weight_total(p.weights) if normalize else 1.0) for s in scales]
    mix = Mix(rule, tuple(scales), tuple(p.weights), consensus=spec.consensus, normalize=normalize, lam=lam)
    return combine(base, tensors, mix, res, batch)

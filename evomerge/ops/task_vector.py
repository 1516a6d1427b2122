"""Task-vector methods (task arithmetic, TIES, DARE, Model Breadcrumbs) as one computation:

    tau_k = theta_k - theta_base            (per source)
    keep_k: which entries survive           (magnitude | random | outliers; see sparsify.py)
    t_k = keep_k * tau_k * w_k * rescale_k
    consensus (TIES): elect sign(sum_k t_k) per entry (>= 0 counts as +), keep agreeing entries
    mixed = sum_k t_k                        (divided by the weight that voted, if normalize)
    theta = theta_base + lambda * mixed

The per-source decisions (thresholds, draws, scales) are resolved here, then fused.combine
makes one pass over base and task vectors. DARE draws from hashes keyed by (recipe seed,
tensor name, pair of sources), so results do not depend on tensor order.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import torch

from evomerge.ops import MethodSpec, TensorParams, get_method
from evomerge.ops.fused import DRAW_BITS, Batch, Rule, abs_sums, combine, draw_threshold, hashes_for
from evomerge.ops.sparsify import kth_smallest, magnitude_band, outlier_band
from evomerge.ops.workspace import Workspace


def tensor_seed(seed: int, name: str, k: int) -> int:
    """A stable 63-bit seed for hash k of tensor `name` (DARE: one per pair of sources;
    independent of merge order)."""
    digest = hashlib.blake2b(f"{seed}:{name}:{k}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def keep_rule(stack: torch.Tensor, spec: MethodSpec, p: TensorParams, ws: Workspace, aux: dict | None) -> Rule:
    """Which entries of each task vector survive. `aux` (resident sources only) memoizes the
    sorted magnitudes of each task vector, so a threshold is one lookup, not a selection."""
    how = spec.sparsify
    if how is None or all(d >= 1 for d in p.densities):
        return Rule("dense")
    K, n = stack.shape[0], math.prod(stack.shape[1:])
    if how == "random":
        return Rule("draw", keys=tuple(tensor_seed(p.seed, p.name, m) for m in range(hashes_for(K))),
                    thr=tuple(draw_threshold(d) for d in p.densities))
    if aux is not None and "sorted" not in aux:  # numpy views: a scalar lookup costs 0.1 us, not 2
        aux["sorted"] = [torch.sort(row.abs().reshape(-1)).values.numpy(force=True) for row in stack]
    bands = []
    for k in range(K):
        if aux is not None:
            kth = lambda i, k=k: float(aux["sorted"][k][i - 1])  # noqa: E731
        else:
            a = torch.abs(stack[k], out=ws.buf("abs", stack.shape[1:], stack.device))
            kth = lambda i, a=a: kth_smallest(a, i)  # noqa: E731
        d = p.densities[k]
        bands.append(magnitude_band(n, d, kth) if how == "magnitude" else outlier_band(n, d, p.gammas[k], kth))
    return Rule("band", lo=tuple(b[0] for b in bands), hi=tuple(b[1] for b in bands))


def _rescale(stack: torch.Tensor, rule: Rule, p: TensorParams) -> list[float]:
    """The factor restoring each sparsified task vector's size: 1/density (for draws, the
    density they keep: the 16-bit threshold over 2**16), or mergekit's L1 rule (match the L1
    norm before trimming), or 1."""
    how = p.globals["rescale"]
    out = []
    for k, d in enumerate(p.densities or [1.0] * len(stack)):
        f = 1.0
        if d >= 1 or rule.kind == "dense":
            pass  # not sparsified
        elif how == "inverse_density" and rule.kind == "draw":  # the density the draws keep
            f = (1 << DRAW_BITS) / rule.thr[k] if rule.thr[k] else 1.0
        elif how == "inverse_density" and d > 0:
            f = 1.0 / d
        elif how == "l1":
            before, after = abs_sums(stack[k], rule, k)
            if before >= 1e-7 and after >= 1e-7:
                f = before / after
        out.append(f)
    return out


def task_vectors(base32: torch.Tensor, tensors: Sequence[torch.Tensor], ws: Workspace) -> torch.Tensor:
    """tau_k = theta_k - theta_base for every source, stacked [K, *shape] in float32."""
    stack = ws.buf("stack", (len(tensors), *base32.shape), base32.device)
    for k, t in enumerate(tensors):
        stack[k].copy_(t).sub_(base32)
    return stack


def weight_total(weights: Sequence[float]) -> float:
    """What `normalize` divides by: the sum of the weights (1 if it is zero)."""
    total = float(sum(weights))
    return total if abs(total) >= 1e-8 else 1.0


def merge(base: torch.Tensor | None, tensors: Sequence[torch.Tensor], p: TensorParams,
          ws: Workspace | None = None, *, stack: torch.Tensor | None = None,
          out: torch.Tensor | None = None, aux: dict | None = None, batch: Batch | None = None) -> torch.Tensor:
    """Float32 result, in `out` if given, else in a workspace buffer.

    `stack`: precomputed task vectors [K, *shape] (float32, as `task_vectors` makes them);
    never modified. Without it they are computed from `tensors`. `aux`: a dict kept with a
    resident stack, for memoized thresholds (same results). `batch`: with a given stack and
    `out`, the pass may be queued there (see fused.Batch); `out` is then written at its run()."""
    if base is None:
        raise ValueError(f"{p.method} needs a base tensor")
    ws = ws or Workspace()
    spec = get_method(p.method)
    shape, dev = base.shape, base.device
    b32 = base if base.dtype == torch.float32 and base.is_contiguous() else ws.buf("base", shape, dev).copy_(base)
    if stack is None or out is None or b32 is not base:  # inputs in workspace buffers: run now
        batch = None
    if stack is None:
        stack = task_vectors(b32, tensors, ws)
    res = out if out is not None else ws.buf("acc", shape, dev)
    normalize, lam = p.globals["normalize"], float(p.globals["lambda"])
    rule = keep_rule(stack, spec, p, ws, aux)
    scales = [w * f for w, f in zip(p.weights, _rescale(stack, rule, p))]
    if not spec.consensus:  # fold lambda and the normalization into each source's scale
        scales = [s * lam / (weight_total(p.weights) if normalize else 1.0) for s in scales]
    return combine(b32, stack, rule, scales, p.weights, spec.consensus, normalize, lam, res, batch)

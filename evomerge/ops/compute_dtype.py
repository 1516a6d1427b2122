"""The compute dtype: helpers for methods that compute in any dtype, and the existing
fused-kernel methods with their arithmetic in a 16-bit compute dtype: what a mergekit config's
`dtype: bfloat16 | float16` means (every input cast to it, each step rounded to it, mergekit
0.1.5's order of operations), so such a config gives mergekit's tensors.

Plain torch ops, one step at a time: this path is for reading mergekit configs faithfully, not
for speed; evomerge's own recipes keep float32 math (the fused kernels). Kept apart from
ops/fused / task_vector.py so those can change without touching it. Where it differs from
mergekit 0.1.5 on purpose: DARE keeps our seeded hash draws (mergekit's torch.bernoulli
draws cannot be reproduced; they agree in distribution).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from evomerge import ops
from evomerge.ops import MethodSpec, TensorParams, get_method
from evomerge.ops.fused.reference import keep_mask
from evomerge.ops.fused.rules import DRAW_BITS, Rule, draw_threshold, hashes_for
from evomerge.ops.slerp import DOT_THRESHOLD, EPS
from evomerge.ops.task_vector import tensor_seed
from evomerge.ops.workspace import Workspace

DTYPES = {name: getattr(torch, name) for name in ops.DTYPES}  # dtype name -> torch dtype
NORM_EPS = 1e-7  # below this an L1 norm counts as zero (no rescale)
SLERP_CHUNK = 1 << 20  # entries per partial reduction in mergekit 0.1.5's SLERP (one tensor per call)


def merge(base: torch.Tensor | None, tensors: Sequence[torch.Tensor], p: TensorParams,
          ws: Workspace | None = None, *, out: torch.Tensor | None = None, memo=None,
          batch=None) -> torch.Tensor:
    """The method's result in the compute dtype (rounded into `out` when given)."""
    b, xs = inputs(base, tensors, p)
    spec = get_method(p.method)
    if p.method == "linear":
        res = _linear(xs, p)
    elif p.method == "slerp":
        res = _slerp(b, xs, p)
    elif b is None:
        raise ValueError(f"{p.method} needs a base tensor")
    else:
        res = _task_vector(b, xs, p, spec)
    return finish(res, out)


def inputs(base: torch.Tensor | None, tensors: Sequence[torch.Tensor], p: TensorParams
           ) -> tuple[torch.Tensor | None, list[torch.Tensor]]:
    """Base and sources cast to the compute dtype (no copy when already in it)."""
    dt = DTYPES[p.compute_dtype]
    return (base.to(dt) if base is not None else None), [t.to(dt) for t in tensors]


def finish(res: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
    """The result, copied (rounded) into `out` when the caller gave one."""
    return out.copy_(res) if out is not None else res


def _weights(p: TensorParams, like: torch.Tensor) -> torch.Tensor:
    """The per-source weights as a [K, 1, ...] tensor in the compute dtype (rounded to it)."""
    w = torch.tensor(p.weights, dtype=like.dtype, device=like.device)
    return w.view(-1, *([1] * like.dim()))


def _linear(xs: list[torch.Tensor], p: TensorParams) -> torch.Tensor:
    """mergekit 0.1.5 sums in float32 (source by source, in order), divides by the sum of the
    weights, then rounds once to the compute dtype."""
    w = torch.tensor(p.weights, dtype=torch.float32, device=xs[0].device)
    res = torch.zeros(xs[0].shape, dtype=torch.float32, device=xs[0].device)
    for x, wk in zip(xs, w.unbind(0)):
        res.addcmul_(x, wk)
    if p.globals["normalize"]:
        res.div_(w.sum())
    return res.to(xs[0].dtype)


def _slerp(b, xs, p: TensorParams) -> torch.Tensor:
    """mergekit 0.1.5's SLERP: float32 on the rounded inputs; the norms and the dot product
    (each vector divided by its norm first) reduced in chunks of SLERP_CHUNK entries, as its
    pipeline does for one tensor at a time; nearly colinear pairs (|cos| > 0.9995) interpolate
    linearly; the result rounded once to the compute dtype."""
    x, y = (b, xs[0]) if b is not None else (xs[0], xs[1])
    u, v = x.reshape(1, -1), y.reshape(1, -1)
    starts = range(0, u.shape[1], SLERP_CHUNK)

    def norm(z: torch.Tensor) -> torch.Tensor:
        parts = [torch.linalg.vector_norm(z[:, i:i + SLERP_CHUNK].float(), dim=1, keepdim=True) for i in starts]
        n = torch.linalg.vector_norm(torch.stack(parts), dim=0)
        return torch.where(n > EPS, n, 1)

    nu, nv = norm(u), norm(v)
    dot = torch.stack([((u[:, i:i + SLERP_CHUNK].float() / nu) * (v[:, i:i + SLERP_CHUNK].float() / nv)
                        ).sum(dim=1, keepdim=True) for i in starts]).sum(dim=0).clamp(-1, 1)
    colinear = dot.abs() > DOT_THRESHOLD
    theta = torch.acos(torch.where(colinear, 0, dot))
    sin_theta = torch.sin(theta)
    t = torch.tensor([[float(p.globals["t"])]], dtype=torch.float32, device=u.device)
    ca = torch.where(colinear, 1 - t, torch.sin((1 - t) * theta) / sin_theta)
    cb = torch.where(colinear, t, torch.sin(t * theta) / sin_theta)
    return (ca * u.float() + cb * v.float()).to(x.dtype).reshape(x.shape)


def _sparsify(delta: torch.Tensor, k: int, p: TensorParams, spec: MethodSpec, draws: Rule | None) -> torch.Tensor:
    """Source k's task vector with the dropped entries zeroed and the chosen rescale applied."""
    d = p.densities[k]
    if d >= 1:
        return delta
    n = delta.numel()
    mags = delta.abs().reshape(-1)
    if mags.device.type == "cpu":
        mags = mags.float()
    mask = torch.zeros_like(delta)
    if spec.sparsify == "magnitude":  # the max(1, int(d * n)) largest, ties broken by sort order
        if d <= 0:
            return torch.zeros_like(delta)
        keep = torch.argsort(mags, descending=True)[: max(1, int(d * n))]
    elif spec.sparsify == "outliers":  # drop the int(gamma * n) largest (fewer if need be), then the smallest
        target = int(d * n)
        n_bot = max(0, n - target - int(p.gammas[k] * n))
        keep = torch.sort(mags).indices[n_bot: n_bot + target]
    else:  # random: our seeded draws, kept where draw < threshold
        keep = keep_mask(delta, draws, k).reshape(-1).nonzero().squeeze(1)
    mask.view(-1)[keep] = 1
    masked = delta * mask
    how = p.globals["rescale"]
    if how == "l1":
        before, after = delta.abs().sum(), masked.abs().sum()
        if before >= NORM_EPS and after >= NORM_EPS:
            masked = masked * (before / after)
    elif how == "inverse_density":
        kept = draws.thr[k] / (1 << DRAW_BITS) if draws is not None else d
        if kept > 0:
            masked = masked * (1.0 / kept)
    return masked


def _task_vector(b: torch.Tensor, xs: list[torch.Tensor], p: TensorParams, spec: MethodSpec) -> torch.Tensor:
    """tau_k = x_k - base; sparsify; weight; elect signs (TIES); sum; normalize; lambda; + base."""
    if not xs:
        return b
    draws = None
    if spec.sparsify == "random":
        draws = Rule("draw", keys=tuple(tensor_seed(p.seed, p.name, m) for m in range(hashes_for(len(xs)))),
                     thr=tuple(draw_threshold(d) for d in p.densities))
    deltas = torch.stack([_sparsify(x - b, k, p, spec, draws) if spec.sparsify else x - b
                          for k, x in enumerate(xs)])
    return combine_deltas(b, deltas, p, spec.consensus)


def combine_deltas(b: torch.Tensor, deltas: torch.Tensor, p: TensorParams, consensus: bool) -> torch.Tensor:
    """Weighted (sparsified) task vectors [K, ...] -> base + lambda * mix, in their dtype:
    TIES sign election when `consensus`, divided by the weight that voted if `normalize`."""
    w = _weights(p, b)
    weighted = deltas * w
    if consensus:
        sign = weighted.sign()
        majority = (weighted.sum(dim=0) >= 0).to(b.dtype) * 2 - 1
        agree = sign == majority
        mixed = (weighted * agree).sum(dim=0)
        divisor = (w * agree).sum(dim=0)
        divisor[divisor == 0] = 1
    else:
        mixed = weighted.sum(dim=0)
        divisor = w.sum(dim=0)
        divisor[divisor.abs() < 1e-8] = 1
    if p.globals["normalize"]:
        mixed = mixed / divisor
    lam = float(p.globals["lambda"])
    if lam != 1:
        mixed = mixed * lam
    return b + mixed

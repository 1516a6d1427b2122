"""Multi-SLERP: a weighted spherical mean of any number of models (or of their task vectors,
added back to the base): each tensor is split into norm and direction; the directions'
weighted mean is normalized, the directions are projected onto its tangent space, averaged
there and mapped back with the exponential map; the result is scaled by the weighted mean
norm (mergekit's docs; C. Goddard's "multislerp" note). Two antipodal inputs that cancel fall
back to linear interpolation. Weights are normalized to sum 1 unless `normalize_weights` is
false. Computes in the compute dtype."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from evomerge.errors import EvomergeError
from evomerge.ops import TensorParams
from evomerge.ops.compute_dtype import finish, inputs


def merge(base: torch.Tensor | None, tensors: Sequence[torch.Tensor], p: TensorParams, ws=None, *,
          out: torch.Tensor | None = None, memo=None, batch=None) -> torch.Tensor:
    b, xs = inputs(base, tensors, p)
    if len(xs) == 1:
        return finish(xs[0], out)
    eps = float(p.globals["eps"])
    vs = torch.stack(xs)
    if b is not None:
        vs -= b
    flat = vs.view(len(xs), -1)
    w = torch.tensor(p.weights, dtype=vs.dtype, device=vs.device)
    if p.globals["normalize_weights"]:
        w = w / w.sum()
    norms = torch.norm(flat, dim=-1, keepdim=True)
    units = flat / (norms + eps)
    mean = (units * w.view(-1, 1)).sum(0)
    mean_norm = torch.norm(mean)
    if mean_norm < eps:
        if len(xs) != 2:
            raise EvomergeError(f"{p.name}: multislerp's weighted mean direction is zero (antipodal inputs "
                                "whose weights cancel); change the weights")
        res = (vs[0] * w[0] + vs[1] * w[1]).view(vs.shape[1:])
    else:
        mean = mean / mean_norm
        tangents = units - (units * mean).sum(-1, keepdim=True) * mean
        step = (tangents * w.view(-1, 1)).sum(0)
        size = torch.norm(step) + eps
        res = (mean * torch.cos(size) + step * (torch.sin(size) / size)) * (norms.squeeze(-1) * w).sum()
        res = res.view(vs.shape[1:])
    return finish(res + b if b is not None else res, out)

"""NuSLERP: spherical interpolation of two models (or, with a base, of their task vectors,
added back to the base), with t = w_2 / (w_1 + w_2) from per-model weights (0.5 when the
weights sum to ~0). `nuslerp_flatten` (default) treats the tensor as one vector; otherwise
rows (`nuslerp_row_wise`) or columns are interpolated separately. Nearly colinear vectors
(1 - cos^2 <= 1e-16) interpolate linearly. Semantics from mergekit's docs; computes in the
compute dtype."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from evomerge.ops import TensorParams
from evomerge.ops.compute_dtype import finish, inputs

NORM_EPS = 1e-7
COLINEAR_EPS = 1e-8


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / torch.norm(x, dim=-1, keepdim=True).clamp(min=NORM_EPS)


def nuslerp(t: float, a: torch.Tensor, b: torch.Tensor, flatten: bool, row_wise: bool) -> torch.Tensor:
    """slerp(a, b, t) over the last axis (all entries if `flatten`; rows if `row_wise`)."""
    shape = a.shape
    if flatten:
        a, b = a.reshape(-1), b.reshape(-1)
    elif row_wise:
        a, b = a.transpose(0, -1), b.transpose(0, -1)
    cos = torch.sum(_unit(a) * _unit(b), dim=-1, keepdim=True).clamp(-1, 1)
    colinear = (1 - cos.square()) <= COLINEAR_EPS ** 2
    theta = torch.acos(torch.where(colinear, 0, cos))
    res = (torch.sin((1 - t) * theta) * a + torch.sin(t * theta) * b) / torch.sin(theta)
    res = torch.where(colinear, (1 - t) * a + t * b, res)
    if row_wise and not flatten:
        res = res.transpose(0, -1)
    return res.reshape(shape)


def merge(base: torch.Tensor | None, tensors: Sequence[torch.Tensor], p: TensorParams, ws=None, *,
          out: torch.Tensor | None = None, memo=None, batch=None) -> torch.Tensor:
    b, (x, y) = inputs(base, tensors, p)
    total = sum(p.weights)
    t = 0.5 if abs(total) < 1e-6 else p.weights[1] / total
    flatten, row_wise = bool(p.globals["nuslerp_flatten"]), bool(p.globals["nuslerp_row_wise"])
    if b is None:
        return finish(nuslerp(t, x, y, flatten, row_wise), out)
    return finish(b + nuslerp(t, x - b, y - b, flatten, row_wise), out)

"""SLERP between two models per tensor: t=0 gives the first (the base), t=1 the second.
Nearly colinear tensors (|cos| > 0.9995) fall back to linear interpolation, as mergekit does."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from evomerge.ops import TensorParams
from evomerge.ops.workspace import Workspace

DOT_THRESHOLD = 0.9995
EPS = 1e-8


def slerp_(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Overwrite float32 `a` with slerp(a, b, t) and return it."""
    na = torch.linalg.vector_norm(a)
    nb = torch.linalg.vector_norm(b)
    na = torch.where(na > EPS, na, 1)
    nb = torch.where(nb > EPS, nb, 1)
    dot = (torch.dot(a.reshape(-1), b.reshape(-1)) / (na * nb)).clamp(-1, 1)
    if dot.abs() > DOT_THRESHOLD:
        return a.mul_(1 - t).add_(b, alpha=t)
    theta = torch.acos(dot)
    sin_theta = torch.sin(theta)
    t32 = torch.tensor(t, dtype=torch.float32, device=a.device)
    ca = torch.sin((1 - t32) * theta) / sin_theta
    cb = torch.sin(t32 * theta) / sin_theta
    return a.mul_(ca).add_(b, alpha=cb.item())


def merge(base: torch.Tensor | None, tensors: Sequence[torch.Tensor], p: TensorParams,
          ws: Workspace | None = None, *, out: torch.Tensor | None = None, memo=None,
          batch=None) -> torch.Tensor:
    """From `base` to the one source, or from the first source to the second without a base."""
    ws = ws or Workspace()
    x, y = (base, tensors[0]) if base is not None else (tensors[0], tensors[1])
    # both in workspace buffers, not in `out` or in place: the norms and the dot product are
    # reductions whose rounding depends on memory alignment (sources may be views of file
    # pages at any offset), and every path must agree bit for bit
    a = ws.buf("acc", x.shape, x.device).copy_(x)
    b = ws.buf("other", y.shape, y.device).copy_(y)
    res = slerp_(a, b, float(p.globals["t"]))
    return out.copy_(res) if out is not None else res

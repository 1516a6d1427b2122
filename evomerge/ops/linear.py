"""Linear merge / model soup: sum_k w_k theta_k, optionally divided by sum_k w_k."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from evomerge.ops import TensorParams
from evomerge.ops.workspace import Workspace


def merge(base: torch.Tensor | None, tensors: Sequence[torch.Tensor], p: TensorParams,
          ws: Workspace | None = None) -> torch.Tensor:
    """Float32 result (a workspace buffer when `ws` is given)."""
    ws = ws or Workspace()
    first = tensors[0]
    acc = ws.buf("acc", first.shape, first.device).zero_()
    for w, t in zip(p.weights, tensors):
        acc.add_(t, alpha=w)
    if p.globals["normalize"]:
        acc.div_(torch.tensor(p.weights, dtype=torch.float32).sum().item())
    return acc

"""Linear merge / model soup: sum_k w_k theta_k, optionally divided by sum_k w_k."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from evomerge.ops import TensorParams
from evomerge.ops.workspace import Workspace


def stack_sources(tensors: Sequence[torch.Tensor], ws: Workspace) -> torch.Tensor:
    """The sources stacked [K, *shape] in float32."""
    first = tensors[0]
    stack = ws.buf("stack", (len(tensors), *first.shape), first.device)
    for k, t in enumerate(tensors):
        stack[k].copy_(t)
    return stack


def merge(base: torch.Tensor | None, tensors: Sequence[torch.Tensor], p: TensorParams,
          ws: Workspace | None = None, *, stack: torch.Tensor | None = None,
          out: torch.Tensor | None = None, aux: dict | None = None) -> torch.Tensor:
    """Float32 result in `out` or a workspace buffer; one BLAS pass over the stacked sources."""
    ws = ws or Workspace()
    if stack is None:
        stack = stack_sources(tensors, ws)
    k = len(p.weights)
    shape = stack.shape[1:]
    res = out if out is not None else ws.buf("acc", shape, stack.device)
    coef = torch.tensor(p.weights, dtype=torch.float32)
    if p.globals["normalize"]:
        coef /= coef.sum().item()
    torch.mv(stack.reshape(k, -1).t(), coef.to(stack.device), out=res.view(-1))
    return res

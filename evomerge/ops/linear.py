"""Linear merge / model soup: sum_k w_k theta_k, optionally divided by sum_k w_k."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from evomerge.ops import TensorParams
from evomerge.ops.fused import Batch, Rule, combine
from evomerge.ops.task_vector import weight_total
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
          out: torch.Tensor | None = None, aux: dict | None = None, batch: Batch | None = None) -> torch.Tensor:
    """Float32 result in `out` or a workspace buffer; one pass over the stacked sources (the
    fused kernel with no base; queued in `batch` when both `stack` and `out` are given)."""
    ws = ws or Workspace()
    if stack is None or out is None:
        batch = None
    if stack is None:
        stack = stack_sources(tensors, ws)
    res = out if out is not None else ws.buf("acc", stack.shape[1:], stack.device)
    total = weight_total(p.weights) if p.globals["normalize"] else 1.0
    coef = [w / total for w in p.weights]
    return combine(None, stack, Rule("dense"), coef, coef, False, False, 1.0, res, batch)

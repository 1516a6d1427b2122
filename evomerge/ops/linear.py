"""Linear merge / model soup: sum_k w_k theta_k, optionally divided by sum_k w_k."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from evomerge.ops import TensorParams
from evomerge.ops.fused import Batch, Mix, Rule, combine
from evomerge.ops.task_vector import kernel_inputs, weight_total
from evomerge.ops.workspace import Workspace


def merge(base: torch.Tensor | None, tensors: Sequence[torch.Tensor], p: TensorParams,
          ws: Workspace | None = None, *, out: torch.Tensor | None = None, memo=None,
          batch: Batch | None = None) -> torch.Tensor:
    """The result in `out` or a float32 workspace buffer; one pass over the sources in their
    stored dtype (the fused kernel with no base; queued in `batch` when `out` is given)."""
    ws = ws or Workspace()
    _, tensors, staged = kernel_inputs(None, tensors, ws)
    if staged or out is None:
        batch = None
    res = out if out is not None else ws.buf("acc", tensors[0].shape, tensors[0].device)
    total = weight_total(p.weights) if p.globals["normalize"] else 1.0
    coef = tuple(w / total for w in p.weights)
    return combine(None, tensors, Mix(Rule("dense"), coef, coef), res, batch)

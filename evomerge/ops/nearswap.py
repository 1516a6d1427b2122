"""NearSwap: pull the base toward the other model where the two are already close.

Per entry, w = clamp(t / |base - other|, 0, 1) and the result is w * other + (1 - w) * base:
near-equal entries are swapped in, distant ones keep the base (mergekit's docs; the method
behind alchemonaut/QuartetAnemoi-70B-t0.0001). |base - other| is floored at 1e-6, as
mergekit does, so equal entries take the other model. Computes in the compute dtype."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from evomerge.ops import TensorParams
from evomerge.ops.compute_dtype import finish, inputs

MIN_DISTANCE = 1e-6


def merge(base: torch.Tensor | None, tensors: Sequence[torch.Tensor], p: TensorParams, ws=None, *,
          out: torch.Tensor | None = None, memo=None, batch=None) -> torch.Tensor:
    b, (x,) = inputs(base, tensors, p)
    w = (float(p.globals["t"]) / (b - x).abs().clamp(min=MIN_DISTANCE)).clamp(0, 1)
    return finish(w * x + (1 - w) * b, out)

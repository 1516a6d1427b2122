"""RAM, Reinforced Agent Merging (arXiv:2601.13572), and its tensor-local RAM+ (`ramplus_tl`).

RL fine-tuning changes few parameters, and differently per model; averaging dilutes them. Per
entry, a model "changes" it when |tau_k| > epsilon. Entries no model changes keep the base;
entries exactly one model changes take that model's change in full; entries several change
take the mean of their changes. RAM+ multiplies each model's unique changes by
1 + r * clip(rho_k, 0, alpha), rho_k = (its shared changes) / (its unique changes) counted in
this tensor (mergekit's tensor-local variant). Computes in the compute dtype (RAM+'s factors
in float32, as mergekit)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from evomerge.ops import TensorParams
from evomerge.ops.compute_dtype import finish, inputs


def merge(base: torch.Tensor | None, tensors: Sequence[torch.Tensor], p: TensorParams, ws=None, *,
          out: torch.Tensor | None = None, memo=None, batch=None) -> torch.Tensor:
    b, xs = inputs(base, tensors, p)
    eps = float(p.globals["epsilon"])
    taus = torch.stack([x - b for x in xs]).view(len(xs), -1)
    changed = taus.abs() > eps
    count = changed.sum(dim=0, keepdim=True)
    shared, unique = count > 1, count == 1
    kept = taus * changed
    unique_part = kept * unique
    if p.method == "ramplus_tl":
        rho = (changed & shared).sum(dim=1) / (changed & unique).sum(dim=1).clamp(min=eps)
        boost = 1 + float(p.globals["r"]) * rho.clamp(min=0, max=float(p.globals["alpha"]))
        unique_part = unique_part * boost.unsqueeze(-1)
    mixed = (unique_part + kept * shared / count.clamp(min=1)).sum(dim=0, keepdim=True)
    return finish(b + mixed.reshape_as(b), out)

"""SCE (FuseChat, Wan et al. 2024, arXiv:2408.07990): Select, Calculate, Erase per tensor.

Select: keep the `select_topk` fraction of positions where the task vectors vary most across
models (variance over models; of the positions whose variance is not zero), zero the rest.
Calculate: one weight per model, the mean of its squared task vector, normalized to sum 1
(equal weights when all are ~0). Erase: TIES sign election on the task vectors. The result is
base + sum(w_k m_k tau_k) / sum(w_k m_k) (the divisor floored at 1e-6). Computes in the
compute dtype."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from evomerge.ops import TensorParams
from evomerge.ops.compute_dtype import finish, inputs

EPS = 1e-6


def select_mask(taus: torch.Tensor, topk: float) -> torch.Tensor:
    """1 at the int(nonzero * topk) positions of highest variance across models, else 0."""
    if topk >= 1:
        return torch.ones_like(taus[0])
    var = torch.var(taus, dim=0, unbiased=False)
    k = int(torch.count_nonzero(var) * topk) if topk > 0 else 0
    mask = torch.zeros_like(var)
    if k > 0:
        mask.view(-1)[torch.topk(var.abs().view(-1), k=k, largest=True).indices] = 1
    return mask


def model_weights(taus: torch.Tensor) -> torch.Tensor:
    """Each task vector's mean square, normalized over the models."""
    w = taus.square().reshape(taus.shape[0], -1).mean(dim=1)
    total = torch.sum(w).item()
    return torch.ones_like(w) / w.shape[0] if abs(total) < EPS else w / total


def merge(base: torch.Tensor | None, tensors: Sequence[torch.Tensor], p: TensorParams, ws=None, *,
          out: torch.Tensor | None = None, memo=None, batch=None) -> torch.Tensor:
    b, xs = inputs(base, tensors, p)
    taus = torch.stack([x - b for x in xs])
    topk = float(p.globals["select_topk"])
    if topk < 1:
        taus = taus * select_mask(taus, topk).unsqueeze(0)
    majority = (taus.sum(dim=0) >= 0).to(taus.dtype) * 2 - 1
    agree = taus.sign() == majority
    w = model_weights(taus).view(-1, *([1] * b.dim())) * agree
    return finish(b + (taus * w).sum(dim=0) / torch.sum(w, dim=0).clamp(min=EPS), out)

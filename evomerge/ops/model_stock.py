"""Model Stock (Jang et al. 2024, arXiv:2403.19522): interpolate between the base and the
average of the fine-tuned models with a ratio set by their geometry.

With N fine-tuned models and cos(theta) the mean pairwise cosine of their task vectors,
t = N cos / (1 + (N - 1) cos) and the result is t * mean(models) + (1 - t) * base (the paper's
eq. for w_H). `filter_wise` computes the angle per row instead of per tensor. Where the
denominator vanishes there is no finite estimate: the base is kept (t = 0), as in mergekit.
Computes in the compute dtype."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from evomerge.ops import TensorParams
from evomerge.ops.compute_dtype import finish, inputs

EPS = 1e-6


def merge(base: torch.Tensor | None, tensors: Sequence[torch.Tensor], p: TensorParams, ws=None, *,
          out: torch.Tensor | None = None, memo=None, batch=None) -> torch.Tensor:
    b, xs = inputs(base, tensors, p)
    shape = b.shape
    if p.globals["filter_wise"]:  # one angle per row (a vector counts as one row)
        b, xs = (b.unsqueeze(0), [x.unsqueeze(0) for x in xs]) if b.dim() == 1 else (b, xs)
    else:
        b, xs = b.reshape(-1), [x.reshape(-1) for x in xs]
    taus = [x - b for x in xs]
    cosines = []
    for i, ta in enumerate(taus):
        for tb in taus[i + 1:]:
            norms = torch.norm(ta, dim=-1) * torch.norm(tb, dim=-1)
            cosines.append(((ta * tb).sum(dim=-1) / norms.clamp(min=EPS)).clamp(-1, 1))
    cos = torch.stack(cosines).mean(dim=0).unsqueeze(-1)
    n = len(xs)
    denom = 1 + (n - 1) * cos
    singular = denom.abs() < EPS
    t = torch.where(singular, torch.zeros_like(cos), (n * cos) / torch.where(singular, torch.ones_like(denom), denom))
    mean = sum(xs) / n
    return finish((t * mean + (1 - t) * b).reshape(shape), out)

"""Arcee Fusion: take the other model's change only where it matters, per tensor.

Importance of entry i: |other - base| times the KL divergence between softmax(other) and
softmax(base) over the tensor's last axis (each row's shift in distribution, +1e-8 in both).
An entry is fused when its importance reaches median + 1.5 * IQR of all importances (the
quartiles read from the sorted importances at index int(q * (n - 1))); elsewhere the base
stays (Arcee's mergekit v0.1 release notes and mergekit's docs). Deterministic: tensors above
10^6 entries take their quartiles from a seeded sample, as mergekit samples them (with its
own unseeded draws). Computes in the compute dtype."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from evomerge.ops import TensorParams
from evomerge.ops.compute_dtype import finish, inputs
from evomerge.ops.task_vector import tensor_seed

SAMPLE = 1_000_000
EPS = 1e-8


def importance(x: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    p, q = F.softmax(x, dim=-1) + EPS, F.softmax(b, dim=-1) + EPS
    return (x - b).abs() * torch.sum(p * torch.log(p / q), dim=-1, keepdim=True)


def threshold(scores: torch.Tensor, seed: int) -> torch.Tensor:
    flat = scores.reshape(-1)
    if flat.numel() > SAMPLE:
        g = torch.Generator(device="cpu").manual_seed(seed)
        flat = flat[torch.randint(flat.numel(), (SAMPLE,), generator=g).to(flat.device)]
    s = torch.sort(flat).values
    q1, med, q3 = s[(torch.tensor([0.25, 0.5, 0.75]) * (s.numel() - 1)).long().to(s.device)]
    return med + 1.5 * (q3 - q1)


def merge(base: torch.Tensor | None, tensors: Sequence[torch.Tensor], p: TensorParams, ws=None, *,
          out: torch.Tensor | None = None, memo=None, batch=None) -> torch.Tensor:
    b, (x,) = inputs(base, tensors, p)
    scores = importance(x, b)
    mask = (scores >= threshold(scores, tensor_seed(p.seed, p.name, 0))).float()
    return finish(b + (x - b) * mask, out)

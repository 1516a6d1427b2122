"""DELLA (Deep, Bhardwaj et al. 2024, arXiv:2406.11617): MagPrune, a DARE drop whose keep
probability grows with the entry's magnitude rank in its row, then TIES-style merging.

Per source k and row, with ranks r = 1..n by |tau| (smallest first), entry i is kept with
probability p_i = (density - epsilon) + 2 epsilon (r_i - 1)/(n - 1), so the row keeps
`density` on average. mergekit requires density +/- epsilon inside (0, 1); here epsilon is
narrowed to min(epsilon, density, 1 - density) instead, so any density is a valid gene. Rescale: the paper's 1/p_i per kept
entry (`inverse_density`), mergekit's L1-norm match (`l1`, what mergekit configs mean), or
none. Then weights, sign election (`della`; not `della_linear`), normalize and lambda as in
TIES (compute_dtype.combine_deltas). The draws are DARE's seeded hash (fused.reference.draws_torch):
the same on every device and in any tensor order. Computes in the compute dtype; the
probabilities in float32."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from evomerge.ops import TensorParams, get_method
from evomerge.ops.compute_dtype import NORM_EPS, combine_deltas, finish, inputs
from evomerge.ops.fused.reference import draws_torch
from evomerge.ops.fused.rules import DRAW_BITS, hashes_for
from evomerge.ops.task_vector import tensor_seed


def keep_probabilities(tau: torch.Tensor, density: float, epsilon: float) -> torch.Tensor:
    """p per entry, from its magnitude rank within its row (a vector is one row)."""
    rows = tau.reshape(tau.shape[0], -1) if tau.dim() > 1 else tau.reshape(1, -1)
    n = rows.shape[1]
    ranks = torch.argsort(torch.argsort(rows.abs().float(), dim=1), dim=1).float()  # 0..n-1
    spread = ranks / (n - 1) if n > 1 else torch.ones_like(ranks)
    return ((density - epsilon) + spread * (2 * epsilon)).reshape(tau.shape)


def magprune(tau: torch.Tensor, k: int, p: TensorParams, keys: tuple[int, ...]) -> torch.Tensor:
    d = p.densities[k]
    if d >= 1:
        return tau
    if d <= 0:
        return torch.zeros_like(tau)
    eps = min(p.epsilons[k], d, 1 - d)  # p stays in [0, 1]: every density is valid (search genes)
    prob = keep_probabilities(tau, d, eps)
    draws = draws_torch(tau.numel(), keys[k // 2], k % 2, tau.device).view(tau.shape)
    kept = draws < torch.round(prob * (1 << DRAW_BITS))
    masked = tau * kept
    how = p.globals["rescale"]
    if how == "inverse_density":
        return torch.where(kept, masked.float() / prob, 0.0).to(tau.dtype)
    if how == "l1":
        before, after = tau.abs().sum(), masked.abs().sum()
        if before >= NORM_EPS and after >= NORM_EPS:
            return masked * (before / after)
    return masked


def merge(base: torch.Tensor | None, tensors: Sequence[torch.Tensor], p: TensorParams, ws=None, *,
          out: torch.Tensor | None = None, memo=None, batch=None) -> torch.Tensor:
    b, xs = inputs(base, tensors, p)
    keys = tuple(tensor_seed(p.seed, p.name, m) for m in range(hashes_for(len(xs))))
    deltas = torch.stack([magprune(x - b, k, p, keys) for k, x in enumerate(xs)])
    return finish(combine_deltas(b, deltas, p, get_method(p.method).consensus), out)

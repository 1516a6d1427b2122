"""In-place sparsification of one task vector: magnitude trim (TIES), random drop (DARE),
outlier + small-entry trim (Model Breadcrumbs). Thresholds come from `torch.kthvalue`
(linear-time selection), not a full sort. Ties at a threshold are all kept."""

from __future__ import annotations

import torch

from evomerge.ops.workspace import Workspace


def _abs(d: torch.Tensor, ws: Workspace) -> torch.Tensor:
    return torch.abs(d, out=ws.buf("abs", d.shape, d.device))


SAMPLE = 1 << 16


def _kth(a: torch.Tensor, k: int) -> torch.Tensor:
    """k-th smallest entry of a (1-based), exactly.

    Large tensors: a fixed-stride sample brackets the answer, then only the entries inside the
    bracket go through `kthvalue` (a few cheap comparison passes instead of a selection over
    everything); if the bracket misses, the full selection runs. Same value either way."""
    flat = a.reshape(-1)
    n = flat.numel()
    if n <= 16 * SAMPLE:
        return torch.kthvalue(flat, k).values
    sample = flat[:: n // SAMPLE]
    m = sample.numel()
    margin = 8 * m**0.5 / 2 + 16  # ~8 standard deviations of the sample's rank error
    lo_i = max(1, min(m, int(k / n * m - margin)))
    hi_i = max(1, min(m, int(k / n * m + margin) + 1))
    lo = torch.kthvalue(sample, lo_i).values if k / n * m - margin > 1 else None
    hi = torch.kthvalue(sample, hi_i).values if k / n * m + margin < m else None
    below = int((flat < lo).sum()) if lo is not None else 0
    if lo is None and hi is None:
        band = flat
    elif lo is None:
        band = flat[flat <= hi]
    elif hi is None:
        band = flat[flat >= lo]
    else:
        band = flat[(flat >= lo) & (flat <= hi)]
    if below < k <= below + band.numel():
        return torch.kthvalue(band, k - below).values
    return torch.kthvalue(flat, k).values


def magnitude_(d: torch.Tensor, density: float, ws: Workspace) -> None:
    """Keep the max(1, int(density * n)) largest-magnitude entries (all when density >= 1)."""
    n = d.numel()
    if density >= 1 or n == 0:
        return
    if density <= 0:
        d.zero_()
        return
    k = max(1, int(density * n))
    a = _abs(d, ws)
    d.mul_(torch.ge(a, _kth(a, n - k + 1), out=ws.buf("mask", d.shape, d.device, torch.bool)))


def random_(d: torch.Tensor, density: float, generator: torch.Generator, ws: Workspace) -> None:
    """Keep each entry independently with probability `density` (DARE's drop, p = 1 - density)."""
    if density >= 1:
        return
    r = torch.rand(d.shape, generator=generator, device=d.device, out=ws.buf("abs", d.shape, d.device))
    d.mul_(torch.lt(r, density, out=ws.buf("mask", d.shape, d.device, torch.bool)))


def outliers_(d: torch.Tensor, density: float, gamma: float, ws: Workspace) -> None:
    """Model Breadcrumbs: drop the int(gamma*n) largest entries, then the smallest, keeping
    int(density * n) in between (fewer outliers dropped when both do not fit)."""
    n = d.numel()
    if density >= 1 or n == 0:
        return
    target = int(density * n)
    if target == 0:
        d.zero_()
        return
    n_bot = max(0, n - target - int(gamma * n))
    a = _abs(d, ws)
    mask = ws.buf("mask", d.shape, d.device, torch.bool)
    torch.gt(a, _kth(a, n_bot + target), out=mask)
    if n_bot > 0:
        mask.logical_or_(a < _kth(a, n_bot + 1))
    d.masked_fill_(mask, 0)

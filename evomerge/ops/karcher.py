"""Karcher mean (Riemannian centre of mass) of the models' tensors on the unit sphere, scaled
back by their mean norm (arXiv:2603.04972; mergekit's `karcher`).

Each tensor is split into norm and direction; the directions' weighted Karcher mean is found
by fixed-point iteration (log-map the directions to the tangent space at the current mean,
average, exp-map back) for up to `max_iter` steps or until the step is below `tol`; the
result is that direction times the weighted mean of the norms. Equal weights (mergekit's).
Norms and angles in float32; directions and the mean in the compute dtype."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from evomerge.ops import TensorParams
from evomerge.ops.compute_dtype import finish, inputs


def karcher_mean(tensors: list[torch.Tensor], alphas: list[float], max_iter: int, tol: float) -> torch.Tensor:
    norms = [torch.linalg.vector_norm(t.float()) for t in tensors]
    units = [torch.zeros_like(t) if n.item() == 0 else (t / n).to(t.dtype) for t, n in zip(tensors, norms)]
    valid = [i for i, n in enumerate(norms) if n.item() > tol]
    if not valid:
        return torch.zeros_like(tensors[0])
    total = sum(alphas[i] for i in valid)
    a = [alphas[i] / total for i in valid]
    u = [units[i] for i in valid]
    mean = torch.zeros_like(u[0])
    for ak, uk in zip(a, u):
        mean += ak * uk
    n = torch.linalg.vector_norm(mean.float())
    mean = u[0].clone() if n.item() < tol else (mean / n).to(mean.dtype)
    for _ in range(max_iter):
        tangent = torch.zeros_like(mean)
        for ak, uk in zip(a, u):
            dot = torch.clamp(torch.dot(mean.flatten(), uk.flatten()), -1.0, 1.0)
            theta = torch.arccos(dot)
            if theta.item() < tol:
                continue
            tangent += ak * (theta / torch.sin(theta)) * (uk - dot * mean)
        step = torch.linalg.vector_norm(tangent.float())
        if step.item() < tol:
            break
        mean = (torch.cos(step) * mean + torch.sin(step) * (tangent / step)).to(mean.dtype)
        n = torch.linalg.vector_norm(mean.float())
        if n.item() > tol:
            mean = (mean / n).to(mean.dtype)
    return sum(ak * nk for ak, nk in zip(alphas, norms)) * mean


def merge(base: torch.Tensor | None, tensors: Sequence[torch.Tensor], p: TensorParams, ws=None, *,
          out: torch.Tensor | None = None, memo=None, batch=None) -> torch.Tensor:
    _, xs = inputs(None, tensors, p)
    if len(xs) == 1:
        return finish(xs[0], out)
    res = karcher_mean(xs, [1.0 / len(xs)] * len(xs), int(p.globals["max_iter"]), float(p.globals["tol"]))
    return finish(res.to(xs[0].dtype), out)

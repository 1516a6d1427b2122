"""Task-vector methods (task arithmetic, TIES, DARE, Model Breadcrumbs) as one computation:

    tau_k = theta_k - theta_base            (per source)
    tau_k <- sparsify(tau_k); rescale       (magnitude | random | outliers; see sparsify.py)
    tau_k <- w_k * tau_k
    consensus (TIES): elect sign(sum_k tau_k) per entry (>= 0 counts as +), keep agreeing entries
    mixed = sum_k tau_k                      (divided by the weight that voted, if normalize)
    theta = theta_base + lambda * mixed

Everything runs in float32 in workspace buffers; DARE draws from a generator seeded by
(recipe seed, tensor name, source index), so results do not depend on tensor order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch

from evomerge.ops import TensorParams, get_method
from evomerge.ops.sparsify import magnitude_, outliers_, random_
from evomerge.ops.workspace import Workspace


def tensor_seed(seed: int, name: str, k: int) -> int:
    """A stable 63-bit seed for source k of tensor `name` (independent of merge order)."""
    digest = hashlib.blake2b(f"{seed}:{name}:{k}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def _sparsify(d: torch.Tensor, how: str, k: int, p: TensorParams, ws: Workspace) -> None:
    density = p.densities[k]
    if density >= 1:
        return
    rescale = p.globals["rescale"]
    before = torch.abs(d, out=ws.buf("abs", d.shape, d.device)).sum() if rescale == "l1" else None
    if how == "magnitude":
        magnitude_(d, density, ws)
    elif how == "random":
        gen = torch.Generator(device=d.device).manual_seed(tensor_seed(p.seed, p.name, k))
        random_(d, density, gen, ws)
    elif how == "outliers":
        outliers_(d, density, p.gammas[k], ws)
    else:  # pragma: no cover - registry and this module disagree
        raise ValueError(f"unknown sparsification {how!r}")
    if rescale == "inverse_density" and density > 0:
        d.mul_(1.0 / density)
    elif before is not None:
        after = torch.abs(d, out=ws.buf("abs", d.shape, d.device)).sum()
        if before >= 1e-7 and after >= 1e-7:  # mergekit's rule: match the L1 norm
            d.mul_(before / after)


def merge(base: torch.Tensor | None, tensors: Sequence[torch.Tensor], p: TensorParams,
          ws: Workspace | None = None) -> torch.Tensor:
    """Float32 result (a workspace buffer when `ws` is given)."""
    if base is None:
        raise ValueError(f"{p.method} needs a base tensor")
    ws = ws or Workspace()
    spec = get_method(p.method)
    shape, dev = base.shape, base.device
    b32 = base if base.dtype == torch.float32 else ws.buf("base", shape, dev).copy_(base)
    deltas = []
    for k, t in enumerate(tensors):
        d = ws.buf(f"delta{k}", shape, dev).copy_(t).sub_(b32)
        if spec.sparsify:
            _sparsify(d, spec.sparsify, k, p, ws)
        deltas.append(d.mul_(p.weights[k]))

    acc = ws.buf("acc", shape, dev)
    normalize = p.globals["normalize"]
    if spec.consensus:
        acc.copy_(deltas[0])
        for d in deltas[1:]:
            acc.add_(d)
        mask = ws.buf("mask", shape, dev, torch.bool)
        sign = ws.buf("sign", shape, dev)
        sign.copy_(torch.ge(acc, 0, out=mask)).mul_(2).sub_(1)  # elected sign, +1 on ties
        acc.zero_()
        div = ws.buf("div", shape, dev).zero_() if normalize else None
        for w, d in zip(p.weights, deltas):
            agree = torch.mul(d, sign, out=ws.buf("abs", shape, dev)).clamp_(min=0)
            acc.add_(agree)
            if div is not None:
                div.add_(torch.gt(agree, 0, out=mask), alpha=w)
        acc.mul_(sign)
        if div is not None:
            div.masked_fill_(torch.eq(div, 0, out=mask), 1)
            acc.div_(div)
    else:
        acc.copy_(deltas[0])
        for d in deltas[1:]:
            acc.add_(d)
        if normalize:
            total = torch.tensor(p.weights, dtype=torch.float32).sum().item()
            acc.div_(total if abs(total) >= 1e-8 else 1.0)
    lam = float(p.globals["lambda"])
    if lam != 1:
        acc.mul_(lam)
    return acc.add_(b32)

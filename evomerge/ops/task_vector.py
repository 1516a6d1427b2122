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


def _sparsify(d: torch.Tensor, how: str, k: int, p: TensorParams, ws: Workspace, aux: dict | None) -> None:
    """Sparsify row k in place. `aux` (resident sources only) memoizes what does not depend on
    the candidate: the sorted magnitudes of each task vector, and DARE's uniform draws."""
    density = p.densities[k]
    if density >= 1:
        return
    rescale = p.globals["rescale"]
    before = torch.abs(d, out=ws.buf("abs", d.shape, d.device)).sum() if rescale == "l1" else None
    if how == "magnitude" and aux is not None and 0 < density:
        srt = aux["sorted"][k]  # ascending |tau_k|: the threshold is one lookup, not a selection
        n = d.numel()
        keep = torch.ge(torch.abs(d, out=ws.buf("abs", d.shape, d.device)), srt[n - max(1, int(density * n))],
                        out=ws.buf("mask", d.shape, d.device, torch.bool))
        d.mul_(keep)
    elif how == "magnitude":
        magnitude_(d, density, ws)
    elif how == "random":
        if aux is not None and aux.get("uniform_seed") == p.seed:
            keep = torch.lt(aux["uniform"][k], density, out=ws.buf("mask", d.shape, d.device, torch.bool))
            d.mul_(keep)
        else:
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


def fill_aux(aux: dict, stack: torch.Tensor, spec_sparsify: str | None, p: TensorParams) -> None:
    """Memoize for resident sources: sorted |tau_k| (TIES) or the seed's uniform draws (DARE)."""
    if spec_sparsify == "magnitude" and "sorted" not in aux:
        aux["sorted"] = [torch.sort(row.abs().reshape(-1)).values for row in stack]
    if spec_sparsify == "random" and aux.get("uniform_seed") != p.seed:
        aux.pop("uniform", None)  # one seed at a time bounds the memory
        gens = [torch.Generator(device=stack.device).manual_seed(tensor_seed(p.seed, p.name, k))
                for k in range(len(stack))]
        aux["uniform"] = [torch.rand(row.shape, generator=g, device=row.device) for row, g in zip(stack, gens)]
        aux["uniform_seed"] = p.seed


def task_vectors(base32: torch.Tensor, tensors: Sequence[torch.Tensor], ws: Workspace) -> torch.Tensor:
    """tau_k = theta_k - theta_base for every source, stacked [K, *shape] in float32."""
    stack = ws.buf("stack", (len(tensors), *base32.shape), base32.device)
    for k, t in enumerate(tensors):
        stack[k].copy_(t).sub_(base32)
    return stack


def merge(base: torch.Tensor | None, tensors: Sequence[torch.Tensor], p: TensorParams,
          ws: Workspace | None = None, *, stack: torch.Tensor | None = None, owned: bool = False,
          out: torch.Tensor | None = None, aux: dict | None = None) -> torch.Tensor:
    """Float32 result, in `out` if given, else in a workspace buffer.

    `stack`: precomputed task vectors [K, *shape] (float32, as `task_vectors` makes them);
    read-only unless `owned`. Without it they are computed from `tensors`. `aux`: a dict
    kept with a resident stack, for memoized thresholds and draws (same results)."""
    if base is None:
        raise ValueError(f"{p.method} needs a base tensor")
    ws = ws or Workspace()
    spec = get_method(p.method)
    shape, dev = base.shape, base.device
    b32 = base if base.dtype == torch.float32 else ws.buf("base", shape, dev).copy_(base)
    if stack is None:
        stack, owned = task_vectors(b32, tensors, ws), True
    res = out if out is not None else ws.buf("acc", shape, dev)
    normalize, lam = p.globals["normalize"], float(p.globals["lambda"])
    sparse = spec.sparsify is not None and any(d < 1 for d in p.densities)
    if not spec.consensus and not sparse:  # base + sum_k c_k tau_k in one BLAS pass
        coef = torch.tensor(p.weights, dtype=torch.float32)
        if normalize:
            total = coef.sum().item()
            coef /= total if abs(total) >= 1e-8 else 1.0
        coef = (coef * lam).to(dev)
        torch.addmv(b32.reshape(-1), stack.reshape(len(p.weights), -1).t(), coef, out=res.view(-1))
        return res
    if aux is not None and sparse:
        fill_aux(aux, stack, spec.sparsify, p)
    work = stack if owned else ws.buf("stack", stack.shape, dev).copy_(stack)
    for k, w in enumerate(p.weights):
        if sparse:
            _sparsify(work[k], spec.sparsify, k, p, ws, aux)
        work[k].mul_(w)
    deltas = list(work.unbind(0))
    if spec.consensus:
        _consensus(deltas, p.weights, normalize, res, ws)
    else:
        res.copy_(deltas[0])
        for d in deltas[1:]:
            res.add_(d)
        if normalize:
            total = torch.tensor(p.weights, dtype=torch.float32).sum().item()
            res.div_(total if abs(total) >= 1e-8 else 1.0)
    if lam != 1:
        res.mul_(lam)
    return res.add_(b32)


def _consensus(deltas: list[torch.Tensor], weights: list[float], normalize: bool, res: torch.Tensor,
               ws: Workspace) -> None:
    """TIES merge of weighted deltas into `res`: elect sign(sum) per entry (0 counts as +),
    sum the agreeing entries, divide by the weight that agreed when normalizing."""
    shape, dev = res.shape, res.device
    res.copy_(deltas[0])
    for d in deltas[1:]:
        res.add_(d)
    mask = ws.buf("mask", shape, dev, torch.bool)
    sign = ws.buf("sign", shape, dev)
    sign.copy_(torch.ge(res, 0, out=mask)).mul_(2).sub_(1)
    res.zero_()
    div = ws.buf("div", shape, dev).zero_() if normalize else None
    for w, d in zip(weights, deltas):
        agree = torch.mul(d, sign, out=ws.buf("abs", shape, dev)).clamp_(min=0)
        res.add_(agree)
        if div is not None:
            div.add_(torch.gt(agree, 0, out=mask), alpha=w)
    res.mul_(sign)
    if div is not None:
        div.masked_fill_(torch.eq(div, 0, out=mask), 1)
        res.div_(div)

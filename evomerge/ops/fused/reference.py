"""The fused pass as torch ops: the reference the CPU kernels are tested against bit for bit,
and the path for other devices (GPU) and dtypes (float16). Per entry, in float32:

    x_k = source_k - base  (no base: x_k = source_k)
    t_k = x_k * scale_k if kept_k else 0
    sum:        out = (0 + t_1 + ... + t_K) + base          (linear: no base term)
    consensus:  s = 0 + t_1 + ... + t_K;  g = -1 if s < 0 else +1;  p_k = t_k * g
                a = 0 + sum(p_k if p_k > 0 else 0);   d = 0 + sum(w_k if p_k > 0 else 0)
                out = (a * g) / (d if normalize and d != 0 else 1) * lam + base
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from evomerge.ops.fused.rules import DRAW_BITS, GOLDEN, HASH_C1, HASH_C2, M32, Mix, Rule, fold_key


def _hash_t(x: torch.Tensor) -> torch.Tensor:
    x = x ^ (x >> 16)
    x = (x * HASH_C1) & M32
    x = x ^ (x >> 15)
    x = (x * HASH_C2) & M32  # may wrap int64; the low 32 bits are still exact
    return x ^ (x >> 16)


def draws_torch(n: int, key: int, half: int = 0, device: torch.device | str = "cpu") -> torch.Tensor:
    """Half `half` (0: low bits, 1: high) of hash `key`'s draws for entries 0..n-1 (int64
    tensor in [0, 2**16))."""
    i = torch.arange(n, dtype=torch.int64, device=device)
    h = _hash_t((i & M32) ^ (((i >> 32) * GOLDEN) & M32) ^ fold_key(key))
    return (h >> (DRAW_BITS * half)) & ((1 << DRAW_BITS) - 1)


def keep_mask(x: torch.Tensor, rule: Rule, k: int) -> torch.Tensor:
    """Boolean mask of the entries of source k's task vector `x` that survive."""
    if rule.kind == "dense":
        return torch.ones_like(x, dtype=torch.bool)
    if rule.kind == "band":
        a = x.abs()
        return ~((a < rule.lo[k]) | (a > rule.hi[k]))
    return (draws_torch(x.numel(), rule.keys[k // 2], k % 2, x.device) < rule.thr[k]).view(x.shape)


def task_vector(base: torch.Tensor | None, source: torch.Tensor) -> torch.Tensor:
    """x_k in float32: source - base (both converted first), or the source itself."""
    x = source.float()
    return x - base.float() if base is not None else x


def combine_torch(base: torch.Tensor | None, sources: Sequence[torch.Tensor], mix: Mix,
                  out: torch.Tensor) -> torch.Tensor:
    """`combine` as torch ops, in the same order (float32 scalars, left-to-right sums); the
    scratch is one float32 term per source of this one tensor."""
    dev = out.device
    rule = mix.rule
    f32 = lambda v: torch.tensor(v, dtype=torch.float32, device=dev)  # noqa: E731
    zero = torch.zeros((), dtype=torch.float32, device=dev)

    ts = []  # one float32 term per source: a tensor's worth each
    for k in range(len(sources)):
        x = task_vector(base, sources[k]).to(dev)
        ts.append(torch.where(keep_mask(x, rule, k), x * f32(mix.scales[k]), zero))
    s = torch.zeros(out.shape, dtype=torch.float32, device=dev)
    for t in ts:
        s = s + t
    if mix.consensus:
        g = torch.where(s < 0, f32(-1.0), f32(1.0))
        acc, div = torch.zeros_like(s), torch.zeros_like(s)
        for t, w in zip(ts, mix.weights):
            p = t * g
            pos = p > 0
            acc = acc + torch.where(pos, p, zero)
            div = div + torch.where(pos, f32(w), zero)
        s = acc * g
        if mix.normalize:
            s = s / torch.where(div != 0, div, f32(1.0))
        s = s * f32(mix.lam)
    if base is not None:
        s = s + base.to(dev).float()
    return out.copy_(s)


"""One pass per tensor for the sparsifying task-vector methods (TIES, DARE, Breadcrumbs).

Written as separate torch ops, trim -> rescale -> weight -> elect sign -> disjoint sum -> add
base walks every tensor some thirty times; a search worker that materializes hundreds of
candidates in memory pays for each walk. Here the per-source decisions are resolved first
(which entries survive: a magnitude band or a seeded draw; one scale per source), then a single
kernel reads each input once and writes the result.

On CPU the kernel is generated per (number of sources, rule, consensus, normalize), compiled
by numba and run as one range per thread on a thread pool; elsewhere (GPU) `combine_torch` runs the
same arithmetic as torch ops. The two agree bit for bit (tested), so a recipe gives the same
tensors on every path. The arithmetic, per entry, left to right in float32:

    t_k = x_k * scale_k if kept_k else 0
    sum:        out = (0 + t_1 + ... + t_K) + base
    consensus:  s = 0 + t_1 + ... + t_K;  g = +1 if s >= 0 else -1;  p_k = t_k * g
                a = 0 + sum(p_k if p_k > 0 else 0);   d = 0 + sum(w_k if p_k > 0 else 0)
                out = (a * g) / (d if normalize and d != 0 else 1) * lam + base

DARE's draws come from a counter-based hash, draw_k(i) = mix(i ^ key_k) >> 8 (32-bit "lowbias32"
mix; key_k from recipe seed, tensor name and source; the index's high 32 bits folded in for
huge tensors). No generator state, no stored random numbers, the same draws on any device and
in any tensor order.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import math
import os
import sys
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

DRAW_BITS = 24  # a draw is a uniform integer in [0, 2**24); kept iff draw < round(density * 2**24)
MIN_SPLIT = 1 << 15  # entries below which a tensor is not worth splitting across threads
SPAN = 1 << 32  # a kernel call never straddles a multiple of this (the draws' salt is per call)
_C1, _C2 = 0x7FEB352D, 0x846CA68B  # "lowbias32" integer hash constants (C. Wellons)
_GOLDEN = 0x9E3779B9  # spreads the high 32 bits of an index (tensors past 2**32 entries)
_M32 = 0xFFFFFFFF


@dataclass(frozen=True)
class Rule:
    """Which entries of every source's task vector survive, resolved for one tensor.

    kind "dense": all. "band": entries with lo_k <= |x| <= hi_k (comparisons written so NaN
    survives and poisons the result). "draw": entries with draw(key_k, i) < thr_k."""

    kind: str
    lo: tuple[float, ...] = ()
    hi: tuple[float, ...] = ()
    keys: tuple[int, ...] = ()  # seeds, one per source (folded to 32 bits)
    thr: tuple[int, ...] = ()


def fold_key(key: int) -> int:
    """A source's 64-bit seed folded to the 32-bit key the draws use."""
    return (key ^ (key >> 32)) & _M32


def draw_threshold(density: float) -> int:
    return int(round(min(max(density, 0.0), 1.0) * (1 << DRAW_BITS)))


# ---- torch reference (and the path for non-CPU devices) ----------------------------------


def _hash_t(x: torch.Tensor) -> torch.Tensor:
    x = x ^ (x >> 16)
    x = (x * _C1) & _M32
    x = x ^ (x >> 15)
    x = (x * _C2) & _M32  # may wrap int64; the low 32 bits are still exact
    return x ^ (x >> 16)


def draws_torch(n: int, key: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The draws of source seed `key` for entries 0..n-1 (int64 tensor in [0, 2**24))."""
    i = torch.arange(n, dtype=torch.int64, device=device)
    return _hash_t((i & _M32) ^ (((i >> 32) * _GOLDEN) & _M32) ^ fold_key(key)) >> (32 - DRAW_BITS)


def keep_mask(x: torch.Tensor, rule: Rule, k: int) -> torch.Tensor:
    """Boolean mask of the entries of source k's task vector `x` that survive."""
    if rule.kind == "dense":
        return torch.ones_like(x, dtype=torch.bool)
    if rule.kind == "band":
        a = x.abs()
        return ~((a < rule.lo[k]) | (a > rule.hi[k]))
    return (draws_torch(x.numel(), rule.keys[k], x.device) < rule.thr[k]).view(x.shape)


def combine_torch(base: torch.Tensor, stack: torch.Tensor, rule: Rule, scales: Sequence[float],
                  weights: Sequence[float], consensus: bool, normalize: bool, lam: float,
                  out: torch.Tensor) -> torch.Tensor:
    """`combine` as torch ops, in the same order (float32 scalars, left-to-right sums)."""
    f32 = lambda v: torch.tensor(v, dtype=torch.float32, device=base.device)  # noqa: E731
    zero = torch.zeros((), dtype=torch.float32, device=base.device)
    ts = [torch.where(keep_mask(x, rule, k), x * f32(scales[k]), zero) for k, x in enumerate(stack)]
    s = torch.zeros_like(base)
    for t in ts:
        s = s + t
    if not consensus:
        return torch.add(s, base, out=out)
    g = torch.where(s >= 0, f32(1.0), f32(-1.0))
    acc, div = torch.zeros_like(base), torch.zeros_like(base)
    for t, w in zip(ts, weights):
        p = t * g
        pos = p > 0
        acc = acc + torch.where(pos, p, zero)
        div = div + torch.where(pos, f32(w), zero)
    r = acc * g
    if normalize:
        r = r / torch.where(div != 0, div, f32(1.0))
    return torch.add(r * f32(lam), base, out=out)


# ---- numba kernels ----------------------------------------------------------------------

_kernels: dict[tuple, object] = {}
_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_key: tuple[int, int] = (0, 0)  # (threads, pid): a forked child builds its own pool


@functools.cache
def _intrinsics():
    """salt(i) and draw(i, key) as 32-bit LLVM integer ops (numba would widen them to 64 bits
    and the vectorized loop would run at half width)."""
    from llvmlite import ir
    from numba import types
    from numba.extending import intrinsic

    i32 = ir.IntType(32)
    c = lambda v: ir.Constant(i32, v)  # noqa: E731

    def mix(b, x):
        x = b.xor(x, b.lshr(x, c(16)))
        x = b.mul(x, c(_C1))
        x = b.xor(x, b.lshr(x, c(15)))
        x = b.mul(x, c(_C2))
        return b.xor(x, b.lshr(x, c(16)))

    @intrinsic
    def salt(typingctx, i):
        """(i >> 32) * GOLDEN: constant over a call (calls never straddle a 2**32 boundary)."""
        def codegen(context, b, signature, args):
            return b.mul(b.trunc(b.lshr(args[0], ir.Constant(ir.IntType(64), 32)), i32), c(_GOLDEN))

        return types.uint32(types.uint64), codegen

    @intrinsic
    def draw(typingctx, j, key):
        def codegen(context, b, signature, args):
            return b.lshr(mix(b, b.xor(b.trunc(args[0], i32), args[1])), c(32 - DRAW_BITS))

        return types.uint32(types.uint64, types.uint32), codegen

    return salt, draw


def _source(K: int, kind: str, consensus: bool, normalize: bool) -> str:
    """Python source of the kernel, unrolled over the K sources (so LLVM vectorizes it)."""
    rows = ", ".join(f"r{k}" for k in range(K))  # separate arrays: row views of one 2-D array vectorize worse
    L = [f"def kernel(base, {rows}, lo, hi, key, thr, scale, w, lam, out, start, stop):"]
    for k in range(K):
        L.append(f"    lo{k} = lo[{k}]; hi{k} = hi[{k}]; key{k} = key[{k}] ^ salt(U64(start))")
        L.append(f"    thr{k} = thr[{k}]; sc{k} = scale[{k}]; w{k} = w[{k}]")
    L.append("    for j in range(U64(start), U64(stop)):")  # unsigned: no negative-index wraparound, so it vectorizes
    for k in range(K):
        L.append(f"        x{k} = r{k}[j]")
        if kind == "dense":
            L.append(f"        t{k} = x{k} * sc{k}")
        elif kind == "band":
            L.append(f"        a{k} = abs(x{k})")
            L.append(f"        t{k} = F0 if (a{k} < lo{k}) | (a{k} > hi{k}) else x{k} * sc{k}")
        else:
            L.append(f"        t{k} = x{k} * sc{k} if draw(j, key{k}) < thr{k} else F0")
    L.append("        s = F0 + " + " + ".join(f"t{k}" for k in range(K)))
    if not consensus:
        L.append("        out[j] = s + base[j]")
        return "\n".join(L)
    L.append("        g = F1 if s >= F0 else -F1")
    for k in range(K):
        L.append(f"        p{k} = t{k} * g")
    L.append("        a = F0 + " + " + ".join(f"(p{k} if p{k} > F0 else F0)" for k in range(K)))
    if normalize:
        L.append("        d = F0 + " + " + ".join(f"(w{k} if p{k} > F0 else F0)" for k in range(K)))
        L.append("        out[j] = (a * g) / (d if d != F0 else F1) * lam + base[j]")
    else:
        L.append("        out[j] = a * g * lam + base[j]")
    return "\n".join(L)


def _l1_source(kind: str) -> str:
    """(sum |x|, sum of the kept |x|) over one source's range, in float64, in entry order."""
    L = ["def kernel(row, lo, hi, key, thr, start, stop):",
         "    key = key ^ salt(U64(start))",
         "    total = 0.0",
         "    kept = 0.0",
         "    for j in range(U64(start), U64(stop)):",
         "        a = abs(row[j])",
         "        total += np.float64(a)"]
    if kind == "band":
        L.append("        if not ((a < lo) | (a > hi)):")
    elif kind == "draw":
        L.append("        if draw(j, key) < thr:")
    else:
        L.append("        if True:")
    L += ["            kept += np.float64(a)", "    return total, kept"]
    return "\n".join(L)


def _kernel(*key):
    """The compiled kernel for `key` (("l1", kind) or (K, kind, consensus, normalize)),
    generated into a module file in the cache folder so that numba's on-disk cache spares
    every later process (Ray workers, test runs) the ~1 s compile."""
    fn = _kernels.get(key)
    if fn is None:
        with _lock:
            fn = _kernels.get(key)
            if fn is None:
                fn = _kernels[key] = _load(key)
    return fn


KERNEL_HEADER = """# generated by evomerge.ops.fused; safe to delete
import numba
import numpy as np
from evomerge.ops.fused import _intrinsics
F0, F1, U64, (salt, draw) = np.float32(0.0), np.float32(1.0), np.uint64, _intrinsics()
"""


def _vllm_compat() -> None:
    """vLLM's CPU platform (0.32) scans every module attribute at engine start and calls
    vars() on it; llvmlite's `ffi.lib` (loaded with numba) answers any attribute, `__dict__`
    included, with a function wrapper, and the scan crashes. Hand it an empty dict instead."""
    from llvmlite.binding import ffi

    fntab = getattr(ffi.lib, "_fntab", None)
    if isinstance(fntab, dict):
        fntab.setdefault("__dict__", {})


def _load(key: tuple):
    _vllm_compat()
    body = _l1_source(key[1]) if key[0] == "l1" else _source(*key)
    src = KERNEL_HEADER + '@numba.njit(nogil=True, error_model="numpy", boundscheck=False, cache=True)\n' + body
    digest = hashlib.sha256(src.encode()).hexdigest()[:16]
    folder = kernel_cache_dir()
    path = folder / f"fused_{digest}.py"
    try:
        if not path.exists():
            folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
            with os.fdopen(fd, "w") as f:
                f.write(src + "\n")
            os.replace(tmp, path)  # atomic: concurrent workers never import half a file
    except OSError:  # no writable cache: compile in memory, every process
        ns: dict = {}
        exec(compile(src.replace("cache=True", "cache=False"), str(path), "exec"), ns)
        return ns["kernel"]
    name = f"evomerge_fused_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # numba's cache finds the kernel's globals through it
    spec.loader.exec_module(module)
    return module.kernel


def kernel_cache_dir() -> Path:
    """$EVOMERGE_KERNEL_CACHE, else ~/.cache/evomerge/kernels (created on first use)."""
    env = os.environ.get("EVOMERGE_KERNEL_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "evomerge" / "kernels"


def _threads() -> ThreadPoolExecutor:
    global _pool, _pool_key
    key = (max(1, torch.get_num_threads()), os.getpid())
    with _lock:
        if _pool is None or _pool_key != key:
            _pool, _pool_key = ThreadPoolExecutor(key[0], thread_name_prefix="evomerge-fused"), key
        return _pool


def _split(n: int, threads: int) -> list[tuple[int, int]]:
    """One contiguous range per thread (64-entry aligned), cut at multiples of SPAN."""
    parts = max(1, min(threads, n // MIN_SPLIT))
    step = ((n + parts - 1) // parts + 63) // 64 * 64 if parts > 1 else max(n, 1)
    cuts = sorted({*range(0, n, step), *range(0, n, SPAN), n})
    return list(zip(cuts[:-1], cuts[1:])) or [(0, 0)]


def _rule_arrays(rule: Rule, K: int) -> tuple:
    """The rule as the kernels' per-source arrays (lo, hi, key, thr); the fields a kind does
    not use get neutral values."""
    return (np.asarray(rule.lo or (0.0,) * K, dtype=np.float32),
            np.asarray(rule.hi or (math.inf,) * K, dtype=np.float32),
            np.asarray([fold_key(key) for key in rule.keys or (0,) * K], dtype=np.uint32),
            np.asarray(rule.thr or (0,) * K, dtype=np.uint32))


def abs_sums(row: torch.Tensor, rule: Rule, k: int) -> tuple[float, float]:
    """(sum |x|, sum of |x| over the entries source k keeps) of one task vector, in float64:
    mergekit's L1 rescale. One pass on CPU; torch ops elsewhere (sums may differ in the last
    bits there, being summed in another order)."""
    if row.device.type != "cpu" or row.dtype != torch.float32 or not row.is_contiguous():
        a = row.abs()
        return a.sum(dtype=torch.float64).item(), (a * keep_mask(row, rule, k)).sum(dtype=torch.float64).item()
    kernel = _kernel("l1", rule.kind)
    lo, hi, key, thr = (a[k] for a in _rule_arrays(rule, k + 1))
    flat, total, kept = row.reshape(-1).numpy(), 0.0, 0.0
    for start, stop in _split(row.numel(), 1):  # one thread: a fixed summation order
        t, kk = kernel(flat, lo, hi, key, thr, start, stop)
        total, kept = total + t, kept + kk
    return total, kept


def combine(base: torch.Tensor, stack: torch.Tensor, rule: Rule, scales: Sequence[float],
            weights: Sequence[float], consensus: bool, normalize: bool, lam: float,
            out: torch.Tensor) -> torch.Tensor:
    """Write the merged tensor into `out` (float32, contiguous, shaped like `base`).

    `stack`: float32 task vectors [K, *shape]; `scales`: per-source factors applied to kept
    entries (weight, rescale, and for the plain sum also lambda and normalization); `weights`:
    what a kept entry adds to the TIES divisor."""
    tensors = (base, stack, out)
    if any(t.device.type != "cpu" or t.dtype != torch.float32 or not t.is_contiguous() for t in tensors):
        return combine_torch(base, stack, rule, scales, weights, consensus, normalize, lam, out)
    K, n = stack.shape[0], base.numel()
    kernel = _kernel(K, rule.kind, consensus, normalize)
    args = (base.reshape(-1).numpy(), *stack.reshape(K, -1).numpy(), *_rule_arrays(rule, K),
            np.asarray(scales, dtype=np.float32), np.asarray(weights, dtype=np.float32), np.float32(lam),
            out.reshape(-1).numpy())
    ranges = _split(n, torch.get_num_threads())
    if len(ranges) == 1:
        kernel(*args, *ranges[0])
    else:
        list(_threads().map(lambda r: kernel(*args, *r), ranges))
    return out

"""One pass over base + sources for the task-vector methods (TIES, DARE, Breadcrumbs, task
arithmetic) and linear, reading the sources in their stored dtype.

Written as separate torch ops, convert -> subtract -> trim -> rescale -> weight -> elect sign
-> disjoint sum -> add base walks every tensor some thirty times and needs float32 copies of
every input; a search worker that materializes hundreds of candidates pays for each walk, and
at 7B cannot afford the copies. Here the per-source decisions are resolved first (which entries
survive: a magnitude band or a seeded draw; one scale per source), then a single kernel reads
each input once in its own dtype (float32 or bfloat16), forms the task vectors in registers and
writes the result in the output's dtype (float32 or bfloat16, rounded to nearest even as torch
does). No float32 copy of anything exists at any time.

On CPU the kernel is generated per variant (number of sources, rule, consensus, normalize,
base or not, input and output dtype), compiled by numba, and takes a table of tensors by
address: a `Batch` runs a whole model as one call per thread. Elsewhere (GPU, float16)
`combine_torch` runs the same arithmetic as torch ops. The two agree bit for bit (tested; NaN
payloads aside), so a recipe gives the same tensors on every path. Per entry, in float32:

    x_k = source_k - base  (no base: x_k = source_k)
    t_k = x_k * scale_k if kept_k else 0
    sum:        out = (0 + t_1 + ... + t_K) + base          (linear: no base term)
    consensus:  s = 0 + t_1 + ... + t_K;  g = -1 if s < 0 else +1;  p_k = t_k * g
                a = 0 + sum(p_k if p_k > 0 else 0);   d = 0 + sum(w_k if p_k > 0 else 0)
                out = (a * g) / (d if normalize and d != 0 else 1) * lam + base

DARE's draws come from a counter-based hash: h_m(i) = mix(i ^ key_m) (32-bit "lowbias32" mix;
key_m from recipe seed, tensor name and m; the index's high 32 bits folded in for huge
tensors), and sources 2m and 2m+1 take its low and high 16 bits: one hash per two sources,
since on CPU the hash's multiplies are DARE's main cost. No generator state, no stored random
numbers, the same draws on any device and in any tensor order.

The magnitude kernels (`magnitude_histograms`, `refine_histograms`) serve exact TIES /
Breadcrumbs thresholds without sorting: non-negative float32 bit patterns sort like their
values, so the top 16 bits of |x_k| histogrammed once per tensor narrow any rank to one bin,
and one more pass counting that bin's low 16 bits finds the exact value (see thresholds.py).
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
from typing import NamedTuple

import numpy as np
import torch

DRAW_BITS = 16  # a draw is a uniform integer in [0, 2**16); kept iff draw < round(density * 2**16)
MIN_SPLIT = 1 << 15  # entries per thread below which a batch is not worth splitting further
SPAN = 1 << 32  # a piece never straddles a multiple of this (the draws' salt is per piece)
BINS = 1 << 16  # magnitude histograms: one bin per top (or low) 16 bits of a float32
LANES = 4  # interleaved copies of the first histogram (see _histogram_source)
_C1, _C2 = 0x7FEB352D, 0x846CA68B  # "lowbias32" integer hash constants (C. Wellons)
_GOLDEN = 0x9E3779B9  # spreads the high 32 bits of an index (tensors past 2**32 entries)
_M32 = 0xFFFFFFFF
KERNEL_DTYPES = {torch.float32: "f32", torch.bfloat16: "bf16"}  # what the CPU kernels read and write


@dataclass(frozen=True)
class Rule:
    """Which entries of every source's task vector survive, resolved for one tensor.

    kind "dense": all. "band": entries with lo_k <= |x| <= hi_k (comparisons written so NaN
    survives and poisons the result). "draw": entries with draw_k(i) < thr_k, draw_k being
    half k % 2 of the hash keyed by keys[k // 2] (one key per two sources)."""

    kind: str
    lo: tuple[float, ...] = ()
    hi: tuple[float, ...] = ()
    keys: tuple[int, ...] = ()  # seeds, one per two sources (folded to 32 bits)
    thr: tuple[int, ...] = ()


@dataclass(frozen=True)
class Mix:
    """How kept entries combine, for one tensor: `scales` multiply each source's kept entries
    (weight, rescale, and for the plain sum also lambda and normalization); `weights` are what
    a kept entry adds to the TIES divisor; `consensus` elects a sign per entry; `normalize`
    divides by the weight that voted; `lam` scales the consensus result."""

    rule: Rule
    scales: tuple[float, ...]
    weights: tuple[float, ...] = ()
    consensus: bool = False
    normalize: bool = False
    lam: float = 1.0


def fold_key(key: int) -> int:
    """A source's 64-bit seed folded to the 32-bit key the draws use."""
    return (key ^ (key >> 32)) & _M32


def draw_threshold(density: float) -> int:
    return int(round(min(max(density, 0.0), 1.0) * (1 << DRAW_BITS)))


def hashes_for(K: int) -> int:
    """How many hash keys K sources' draws use."""
    return (K + 1) // 2


# ---- torch reference (and the path for non-CPU devices and other dtypes) -----------------


def _hash_t(x: torch.Tensor) -> torch.Tensor:
    x = x ^ (x >> 16)
    x = (x * _C1) & _M32
    x = x ^ (x >> 15)
    x = (x * _C2) & _M32  # may wrap int64; the low 32 bits are still exact
    return x ^ (x >> 16)


def draws_torch(n: int, key: int, half: int = 0, device: torch.device | str = "cpu") -> torch.Tensor:
    """Half `half` (0: low bits, 1: high) of hash `key`'s draws for entries 0..n-1 (int64
    tensor in [0, 2**16))."""
    i = torch.arange(n, dtype=torch.int64, device=device)
    h = _hash_t((i & _M32) ^ (((i >> 32) * _GOLDEN) & _M32) ^ fold_key(key))
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


# ---- numba kernels ----------------------------------------------------------------------

_kernels: dict[tuple, object] = {}
_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_key: tuple[int, int] = (0, 0)  # (threads, pid): a forked child builds its own pool


@functools.cache
def _intrinsics():
    """salt(i), hash32(i, key) and its halves lo16(h) / hi16(h) as 32-bit LLVM integer ops
    (numba would widen them to 64 bits and the vectorized loop would run at half width; the
    halves are signed, as AVX2 compares only signed integers in one instruction); f32p / u16p
    (address) as float32 / uint16 pointers; bf2f / f2bf between bfloat16 bits and float32
    (round to nearest even, NaN -> 0x7FC0, as torch's scalar conversion); absbits(x), the bit
    pattern of |x|; neg_if(x, cond)."""
    from llvmlite import ir
    from numba import types
    from numba.extending import intrinsic

    i16, i32 = ir.IntType(16), ir.IntType(32)
    c = lambda v: ir.Constant(i32, v)  # noqa: E731

    def mix(b, x):
        x = b.xor(x, b.lshr(x, c(16)))
        x = b.mul(x, c(_C1))
        x = b.xor(x, b.lshr(x, c(15)))
        x = b.mul(x, c(_C2))
        return b.xor(x, b.lshr(x, c(16)))

    @intrinsic
    def salt(typingctx, i):
        """(i >> 32) * GOLDEN: constant over a piece (pieces never straddle a 2**32 boundary)."""
        def codegen(context, b, signature, args):
            return b.mul(b.trunc(b.lshr(args[0], ir.Constant(ir.IntType(64), 32)), i32), c(_GOLDEN))

        return types.uint32(types.uint64), codegen

    @intrinsic
    def hash32(typingctx, j, key):
        def codegen(context, b, signature, args):
            return mix(b, b.xor(b.trunc(args[0], i32), args[1]))

        return types.uint32(types.uint64, types.uint32), codegen

    @intrinsic
    def lo16(typingctx, h):
        def codegen(context, b, signature, args):
            return b.and_(args[0], c((1 << DRAW_BITS) - 1))

        return types.int32(types.uint32), codegen

    @intrinsic
    def hi16(typingctx, h):
        def codegen(context, b, signature, args):
            return b.lshr(args[0], c(DRAW_BITS))

        return types.int32(types.uint32), codegen

    def pointer(elem):
        @intrinsic
        def to_ptr(typingctx, addr):
            ptr = types.CPointer(elem)

            def codegen(context, b, signature, args):
                return b.inttoptr(args[0], context.get_value_type(ptr))

            return ptr(types.uint64), codegen

        return to_ptr

    @intrinsic
    def bf2f(typingctx, h):
        def codegen(context, b, signature, args):
            return b.bitcast(b.shl(b.zext(args[0], i32), c(16)), ir.FloatType())

        return types.float32(types.uint16), codegen

    @intrinsic
    def f2bf(typingctx, x):
        def codegen(context, b, signature, args):
            bits = b.bitcast(args[0], i32)
            bias = b.add(b.and_(b.lshr(bits, c(16)), c(1)), c(0x7FFF))
            rounded = b.trunc(b.lshr(b.add(bits, bias), c(16)), i16)
            nan = b.fcmp_unordered("uno", args[0], args[0])
            return b.select(nan, ir.Constant(i16, 0x7FC0), rounded)

        return types.uint16(types.float32), codegen

    @intrinsic
    def absbits(typingctx, x):
        def codegen(context, b, signature, args):
            return b.and_(b.bitcast(args[0], i32), c(0x7FFFFFFF))

        return types.int32(types.float32), codegen

    @intrinsic
    def neg_if(typingctx, x, cond):
        """-x where cond, else x, as a flip of the sign bit (cheaper than multiplying by -1,
        and equal to it but for the sign of a NaN)."""
        def codegen(context, b, signature, args):
            bits = b.bitcast(args[0], i32)
            flip = b.select(args[1], c(0x80000000), c(0))
            return b.bitcast(b.xor(bits, flip), ir.FloatType())

        return types.float32(types.float32, types.boolean), codegen

    return (salt, hash32, lo16, hi16, pointer(types.float32), pointer(types.uint16), bf2f, f2bf,
            absbits, neg_if)


_PTR = {"f32": "f32p", "bf16": "u16p"}
_LOAD = {"f32": "{}", "bf16": "bf2f({})"}
_STORE = {"f32": "{}", "bf16": "f2bf({})"}


def _inputs(K: int, has_base: bool, dt: str, row: str) -> tuple[list[str], list[str]]:
    """Kernel lines that bind base / r0..r{K-1} to a row of addresses, and per-entry lines that
    load x0..x{K-1} (task vectors when there is a base) and bj (the base entry)."""
    setup, load = [], []
    if has_base:
        setup.append(f"base = numba.carray({_PTR[dt]}({row}[0]), stop)")
        load.append("bj = " + _LOAD[dt].format("base[j]"))
    for k in range(K):
        setup.append(f"r{k} = numba.carray({_PTR[dt]}({row}[{k + 1}]), stop)")
        value = _LOAD[dt].format(f"r{k}[j]")
        load.append(f"x{k} = {value} - bj" if has_base else f"x{k} = {value}")
    return setup, load


def _source(K: int, kind: str, consensus: bool, normalize: bool, has_base: bool, in_dt: str, out_dt: str) -> str:
    """Python source of the kernel, unrolled over the K sources (so LLVM vectorizes it).

    One call runs a list of pieces (tensor, start, stop): tensor t's inputs and output are
    found by address in row t of `addr` (base, sources..., out), its rule in row t of the
    per-source tables. A whole model is one call per thread, whatever its tensor count."""
    setup, load = _inputs(K, has_base, in_dt, "addr[t]")
    L = ["def kernel(addr, lo, hi, key, thr, scale, w, lam, pieces, first, end):",
         "    for p in range(first, end):",
         "        t, start, stop = pieces[p, 0], pieces[p, 1], pieces[p, 2]",
         f"        out = numba.carray({_PTR[out_dt]}(addr[t, {K + 1}]), stop)",
         "        lm = lam[t]"]
    L += ["        " + line for line in setup]
    for k in range(K):  # separate scalars: row views of one 2-D array vectorize worse
        L.append(f"        lo{k} = lo[t, {k}]; hi{k} = hi[t, {k}]; key{k} = key[t, {k}] ^ salt(U64(start))")
        L.append(f"        thr{k} = thr[t, {k}]; sc{k} = scale[t, {k}]; w{k} = w[t, {k}]")
    L.append("        for j in range(U64(start), U64(stop)):")  # unsigned: no negative-index wraparound, so it vectorizes
    body = list(load)
    body += [f"h{m} = hash32(j, key{m})" for m in range(hashes_for(K))] if kind == "draw" else []
    for k in range(K):
        if kind == "dense":
            body.append(f"t{k} = x{k} * sc{k}")
        elif kind == "band":
            body.append(f"a{k} = abs(x{k})")
            body.append(f"t{k} = F0 if (a{k} < lo{k}) | (a{k} > hi{k}) else x{k} * sc{k}")
        elif kind == "floor":  # a band with no upper end (TIES): one comparison fewer
            body.append(f"t{k} = F0 if abs(x{k}) < lo{k} else x{k} * sc{k}")
        else:
            body.append(f"t{k} = x{k} * sc{k} if {('lo16', 'hi16')[k % 2]}(h{k // 2}) < thr{k} else F0")
    # "F0 +" starts a sum only where the sign of a zero result can show (-0.0 + 0.0 is +0.0,
    # as in the torch formulation); s's sign test, a (never -0) and d (tested != 0) skip it
    terms = " + ".join(f"t{k}" for k in range(K))
    plus_base = " + bj" if has_base else ""
    if not consensus:
        value = f"F0 + {terms}{plus_base}"
    else:
        body.append(f"s = {terms}")
        body.append("neg = s < F0")  # the elected sign; as NaN < 0 is false, NaN elects +
        body += [f"p{k} = neg_if(t{k}, neg)" for k in range(K)]
        body.append("a = " + " + ".join(f"(p{k} if p{k} > F0 else F0)" for k in range(K)))
        if normalize:
            body.append("d = " + " + ".join(f"(w{k} if p{k} > F0 else F0)" for k in range(K)))
            value = f"neg_if(a, neg) / (d if d != F0 else F1) * lm{plus_base}"
        else:
            value = f"neg_if(a, neg) * lm{plus_base}"
    body.append("out[j] = " + _STORE[out_dt].format(value))
    L += ["            " + line for line in body]
    return "\n".join(L)


def _l1_source(kind: str) -> str:
    """(sum |x|, sum of the kept |x|) over one source's range, in float64, in entry order."""
    L = ["def kernel(row, lo, hi, key, thr, upper, start, stop):",
         "    key = key ^ salt(U64(start))",
         "    total = 0.0",
         "    kept = 0.0",
         "    for j in range(U64(start), U64(stop)):",
         "        a = abs(row[j])",
         "        total += np.float64(a)"]
    if kind == "band":
        L.append("        if not ((a < lo) | (a > hi)):")
    elif kind == "draw":
        L.append("        if (hi16(hash32(j, key)) if upper else lo16(hash32(j, key))) < thr:")
    else:
        L.append("        if True:")
    L += ["            kept += np.float64(a)", "    return total, kept"]
    return "\n".join(L)


def _histogram_source(K: int, has_base: bool, dt: str, refine: bool) -> str:
    """Counts of |x_k|'s float32 bit patterns over one range of one tensor.

    First pass: by the top 16 bits, one int64 per bin holding the entries (low 32 bits) and,
    of those, the entries whose low 16 bits are zero (high 32 bits: the bin's smallest value
    exactly; task vectors of bf16 sources land there almost always), in LANES interleaved
    copies (counts[k, j % LANES, top]): runs of equal bins then update different addresses
    instead of waiting on the previous store. Refining: by the low 16 bits, of the entries in
    source k's target bin bins[k] (-1: none) whose low bits are not zero (counts[k, low])."""
    setup, load = _inputs(K, has_base, dt, "addr")
    L = ["def kernel(addr, bins, counts, start, stop):" if refine else "def kernel(addr, counts, start, stop):"]
    L += ["    " + line for line in setup]
    if refine:
        L += [f"    b{k} = bins[{k}]" for k in range(K)]
    L.append("    for j in range(U64(start), U64(stop)):")
    body = list(load) + ([] if refine else [f"lane = j & {LANES - 1}"])
    for k in range(K):
        body.append(f"a{k} = absbits(x{k})")
        if refine:
            body += [f"low{k} = a{k} & 0xFFFF",
                     f"if (a{k} >> 16) == b{k} and low{k} != 0:", f"    counts[{k}, low{k}] += 1"]
        else:
            body.append(f"counts[{k}, lane, a{k} >> 16] += ONE + (np.int64((a{k} & 0xFFFF) == 0) << 32)")
    L += ["        " + line for line in body]
    return "\n".join(L)


def _kernel(*key):
    """The compiled kernel for `key` (("l1", kind), ("hist", K, has_base, dt, refine) or a
    combine variant), generated into a module file in the cache folder so that numba's
    on-disk cache spares every later process (Ray workers, test runs) the ~1 s compile."""
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
F0, F1, U64, ONE = np.float32(0.0), np.float32(1.0), np.uint64, np.int64(1)
salt, hash32, lo16, hi16, f32p, u16p, bf2f, f2bf, absbits, neg_if = _intrinsics()
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
    if key[0] == "l1":
        body = _l1_source(key[1])
    elif key[0] == "hist":
        body = _histogram_source(*key[1:])
    else:
        body = _source(*key)
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


def _pieces(sizes: Sequence[int], threads: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Tensors of `sizes` entries cut into pieces (tensor, start, stop) for `threads` threads:
    one contiguous share of the total entries per thread, cut 64-entry aligned within a
    tensor and never straddling a multiple of SPAN. Returns the pieces [P, 3] and each busy
    thread's [first, end) range of them."""
    total = sum(sizes)
    parts = max(1, min(threads, total // MIN_SPLIT))
    share = max(1, -(-total // parts))
    rows, owners, offset = [], [], 0
    for t, n in enumerate(sizes):
        cuts = {0, n, *range(SPAN, n, SPAN)}
        cuts |= {min(n, (c - offset + 63) // 64 * 64) for c in range(share, total, share) if offset < c < offset + n}
        cuts = sorted(cuts)
        for a, b in zip(cuts, cuts[1:]):
            rows.append((t, a, b))
            owners.append(min((offset + a) // share, parts - 1))
        offset += n
    bounds, first = [], 0
    for i in range(1, len(owners) + 1):
        if i == len(owners) or owners[i] != owners[first]:
            bounds.append((first, i))
            first = i
    return np.asarray(rows, dtype=np.int64).reshape(-1, 3), bounds


def _rule_arrays(rules: Sequence[Rule], K: int) -> tuple[np.ndarray, ...]:
    """The rules as the kernels' [T, K] tables (lo, hi, key, thr); the fields a kind does not
    use get neutral values (and the keys, one per two sources, trailing zeros)."""
    lo = [r.lo or (0.0,) * K for r in rules]
    hi = [r.hi or (math.inf,) * K for r in rules]
    key = [[fold_key(k) for k in r.keys] + [0] * (K - len(r.keys)) for r in rules]
    thr = [r.thr or (0,) * K for r in rules]
    return (np.array(lo, dtype=np.float32), np.array(hi, dtype=np.float32),
            np.array(key, dtype=np.uint32), np.array(thr, dtype=np.int32))


def abs_sums(row: torch.Tensor, rule: Rule, k: int) -> tuple[float, float]:
    """(sum |x|, sum of |x| over the entries source k keeps) of one float32 task vector, in
    float64: mergekit's L1 rescale. One pass on CPU; torch ops elsewhere (sums may differ in
    the last bits there, being summed in another order)."""
    if not (_cpu_contiguous(row) and row.dtype is torch.float32):
        a = row.abs()
        return a.sum(dtype=torch.float64).item(), (a * keep_mask(row, rule, k)).sum(dtype=torch.float64).item()
    kernel = _kernel("l1", rule.kind)
    lo, hi, keys, thr = (a[0] for a in _rule_arrays([rule], k + 1))
    flat, total, kept = row.reshape(-1).numpy(), 0.0, 0.0
    for _, start, stop in _pieces([row.numel()], 1)[0]:  # one thread: a fixed summation order
        t, kk = kernel(flat, lo[k], hi[k], keys[k // 2], thr[k], k % 2 == 1, start, stop)
        total, kept = total + t, kept + kk
    return total, kept


def _cpu_contiguous(t: torch.Tensor) -> bool:
    return t.is_cpu and t.is_contiguous()


def kernel_dtype(base: torch.Tensor | None, sources: Sequence[torch.Tensor]) -> str | None:
    """The CPU kernels' name for the inputs' common dtype, or None if they cannot read them
    directly (another device or dtype, mixed dtypes, not contiguous)."""
    inputs = ([base] if base is not None else []) + list(sources)
    dts = {t.dtype for t in inputs}
    if len(dts) != 1 or not all(_cpu_contiguous(t) for t in inputs):
        return None
    return KERNEL_DTYPES.get(dts.pop())


def _addresses(base: torch.Tensor | None, sources: Sequence[torch.Tensor]) -> np.ndarray:
    return np.array([base.data_ptr() if base is not None else 0, *(s.data_ptr() for s in sources)], dtype=np.uint64)


def _split_run(kernel, n: int, tables: tuple, shape_of_counts: tuple, dtype=np.int32) -> np.ndarray:
    """Run a counting kernel over [0, n) split across threads, each with its own counts;
    their sum (int64)."""
    parts = max(1, min(torch.get_num_threads(), n // MIN_SPLIT))  # as _pieces splits a batch
    ranges = [(n * i // parts, n * (i + 1) // parts) for i in range(parts)]
    parts = [np.zeros(shape_of_counts, dtype=dtype) for _ in ranges]
    if len(ranges) == 1:
        kernel(*tables, parts[0], *ranges[0])
    else:
        list(_threads().map(lambda i: kernel(*tables, parts[i], *ranges[i]), range(len(ranges))))
    total = parts[0].astype(np.int64)
    for p in parts[1:]:
        total += p
    return total


def magnitude_histograms(base: torch.Tensor | None, sources: Sequence[torch.Tensor]) -> np.ndarray:
    """[K, 2, 2**16] counts of every source's |x_k| by the top 16 bits of its float32 pattern:
    all entries ([k, 0]) and those with zero low bits ([k, 1]) (CPU, float32 or bfloat16
    inputs: see kernel_dtype)."""
    dt = kernel_dtype(base, sources)
    K = len(sources)
    kernel = _kernel("hist", K, base is not None, dt, False)
    packed = _split_run(kernel, sources[0].numel(), (_addresses(base, sources),), (K, LANES, BINS), np.int64)
    packed = packed.sum(axis=1)
    return np.stack([packed & _M32, packed >> 32], axis=1)


def refine_histograms(base: torch.Tensor | None, sources: Sequence[torch.Tensor], bins: np.ndarray) -> np.ndarray:
    """[K, 2**16] counts, by the low 16 bits, of the entries of |x_k| whose top 16 bits are
    bins[k] (-1 for none) and whose low 16 bits are not zero."""
    dt = kernel_dtype(base, sources)
    K = len(sources)
    kernel = _kernel("hist", K, base is not None, dt, True)
    return _split_run(kernel, sources[0].numel(), (_addresses(base, sources), bins.astype(np.int64)), (K, BINS))


class Batch:
    """combine() calls gathered over a model's tensors and run as one parallel pass by run().

    Called per tensor, each pass pays ~0.3 ms of dispatch and thread hand-off: a third of a
    30M-parameter model's merge. Gathered, a model is one kernel call per thread (per kernel
    variant, usually one). Whoever adds a job promises its tensors stay put until run()."""

    def __init__(self) -> None:
        self._jobs: dict[tuple, list[_Job]] = {}

    def add(self, variant: tuple, job: _Job) -> None:
        self._jobs.setdefault(variant, []).append(job)

    def run(self) -> None:
        jobs, self._jobs = self._jobs, {}
        for variant, group in jobs.items():
            _run(variant, group)


class _Job(NamedTuple):
    base: torch.Tensor | None
    sources: Sequence[torch.Tensor]
    mix: Mix
    out: torch.Tensor


def _run(variant: tuple, jobs: Sequence[_Job]) -> None:
    """One kernel variant over many tensors: their addresses and rules as tables, then one
    call per thread."""
    K = variant[0]
    addr = np.array([[j.base.data_ptr() if j.base is not None else 0,
                      *(s.data_ptr() for s in j.sources), j.out.data_ptr()] for j in jobs], dtype=np.uint64)
    lo, hi, key, thr = _rule_arrays([j.mix.rule for j in jobs], K)
    scale = np.array([j.mix.scales for j in jobs], dtype=np.float32).reshape(-1, K)
    w = np.array([j.mix.weights or (0.0,) * K for j in jobs], dtype=np.float32).reshape(-1, K)
    lam = np.array([j.mix.lam for j in jobs], dtype=np.float32)
    pieces, bounds = _pieces([j.out.numel() for j in jobs], torch.get_num_threads())
    kernel = _kernel(*variant)
    tables = (addr, lo, hi, key, thr, scale, w, lam, pieces)
    if len(bounds) == 1:
        kernel(*tables, *bounds[0])
    elif bounds:
        list(_threads().map(lambda b: kernel(*tables, *b), bounds))


def combine(base: torch.Tensor | None, sources: Sequence[torch.Tensor], mix: Mix, out: torch.Tensor,
            batch: Batch | None = None) -> torch.Tensor:
    """Write the merged tensor into `out` (any float dtype, shaped like the sources).

    `base`: task vectors are taken against it and it is added last, or None (linear);
    `sources`: K tensors in their stored dtype. With `batch`, a CPU pass is queued there and
    `out` is written at batch.run()."""
    in_dt = kernel_dtype(base, sources)
    out_dt = KERNEL_DTYPES.get(out.dtype) if _cpu_contiguous(out) else None
    if in_dt is None or out_dt is None:
        return combine_torch(base, sources, mix, out)
    rule = mix.rule
    kind = "floor" if rule.kind == "band" and all(h == math.inf for h in rule.hi) else rule.kind
    variant = (len(sources), kind, mix.consensus, mix.normalize, base is not None, in_dt, out_dt)
    job = _Job(base, tuple(sources), mix, out)
    if batch is not None:
        batch.add(variant, job)
    else:
        _run(variant, [job])
    return out

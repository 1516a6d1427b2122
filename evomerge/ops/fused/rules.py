"""What one fused pass computes for one tensor, as data: which entries of each source's task
vector survive (`Rule`) and how the survivors combine (`Mix`), plus the parameters of DARE's
seeded draws. The CPU kernels and the torch reference both read these.

DARE's draws come from a counter-based hash: h_m(i) = mix(i ^ key_m) (32-bit "lowbias32" mix;
key_m from recipe seed, tensor name and m; the index's high 32 bits folded in for huge
tensors), and sources 2m and 2m+1 take its low and high 16 bits: one hash per two sources,
since on CPU the hash's multiplies are DARE's main cost. No generator state, no stored random
numbers, the same draws on any device and in any tensor order.
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass

DRAW_BITS = 16  # a draw is a uniform integer in [0, 2**16); kept iff draw < round(density * 2**16)
HASH_C1, HASH_C2 = 0x7FEB352D, 0x846CA68B  # "lowbias32" integer hash constants (C. Wellons)
GOLDEN = 0x9E3779B9  # spreads the high 32 bits of an index (tensors past 2**32 entries)
M32 = 0xFFFFFFFF


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
    divides by the weight that voted; `lam` scales the consensus result (named, never positional)."""

    rule: Rule
    scales: tuple[float, ...]
    weights: tuple[float, ...] = ()
    _: KW_ONLY
    consensus: bool = False
    normalize: bool = False
    lam: float = 1.0


def fold_key(key: int) -> int:
    """A source's 64-bit seed folded to the 32-bit key the draws use."""
    return (key ^ (key >> 32)) & M32


def draw_threshold(density: float) -> int:
    """The draw threshold that keeps a fraction `density` of the entries."""
    return int(round(min(max(density, 0.0), 1.0) * (1 << DRAW_BITS)))


def hashes_for(K: int) -> int:
    """How many hash keys K sources' draws use."""
    return (K + 1) // 2


"""The fused CPU kernel against its torch formulation (bit for bit), and DARE's draws."""

from __future__ import annotations

import math

import pytest
import torch

from evomerge.ops.fused import MIN_SPLIT, SPAN, Batch, Mix, Rule, abs_sums, combine
from evomerge.ops.fused.reference import combine_torch, draws_torch, keep_mask
from evomerge.ops.fused.rules import DRAW_BITS, draw_threshold


def rules(K: int, stack: torch.Tensor) -> list[Rule]:
    a = stack.abs().reshape(K, -1)
    q = lambda k, f: torch.quantile(a[k, :10000], f).item()  # noqa: E731
    band = Rule("band", lo=tuple([q(k, 0.4) for k in range(K - 1)] + [-math.inf]),
                hi=tuple([math.inf] + [q(k, 0.9) for k in range(1, K)]))
    draw = Rule("draw", keys=tuple(2**40 * k + 11 for k in range(K)),
                thr=tuple(draw_threshold(d) for d in ([0.3, 1.0, 0.0, 0.7][:K])))
    floor = Rule("band", lo=tuple(q(k, 0.5) for k in range(K)), hi=(math.inf,) * K)  # TIES: the kernel's "floor"
    return [Rule("dense"), band, floor, draw, Rule("band", lo=(math.inf,) * K, hi=(-math.inf,) * K)]


@pytest.mark.parametrize("K,n", [(1, 1), (2, 1000), (3, 1000), (4, 999), (3, 4 * MIN_SPLIT + 12345)])  # last: threads
def test_kernel_equals_the_torch_formulation_bit_for_bit(K, n):
    g = torch.Generator().manual_seed(K * 1000 + n)
    base = torch.randn(n, generator=g)
    stack = torch.randn(K, n, generator=g) * 0.01
    stack[:, ::97] = 0.0  # zero deltas: no vote, no weight in the divisor
    if n > 40:  # special values: NaN poisons, inf and signed zeros keep their IEEE meaning
        stack[0, 5], stack[-1, 7], stack[:, 13], base[13], base[17] = math.nan, math.inf, -0.0, -0.0, -0.0
    scales, weights = [0.7, -0.4, 1.3, 0.05][:K], [0.9, -0.5, 1.1, 0.3][:K]
    for rule in rules(K, stack):
        for consensus in (False, True):
            for normalize in (False, True):
                for b in (base, None):
                    mix = Mix(rule, tuple(scales), tuple(weights), consensus=consensus, normalize=normalize, lam=1.7)
                    ours = combine(b, list(stack), mix, torch.empty(n))
                    ref = combine_torch(b, list(stack), mix, torch.empty(n))
                    same = (ours.view(torch.int32) == ref.view(torch.int32)) | (ours.isnan() & ref.isnan())
                    assert bool(same.all()), (rule.kind, consensus, normalize, b is None)


def test_pieces_cover_every_tensor_once_split_across_threads_and_never_straddle_a_span():
    from evomerge.ops.fused import _pieces

    cases = [([0], 2), ([1], 2), ([MIN_SPLIT], 4), ([10 * MIN_SPLIT + 7], 3), ([SPAN + 5], 1),
             ([3 * SPAN - 1], 2), ([5, 0, MIN_SPLIT * 3, 17, MIN_SPLIT], 4), ([100] * 50, 2)]
    for sizes, threads in cases:
        pieces, bounds = _pieces(sizes, threads)
        for t, n in enumerate(sizes):
            mine = [(a, b) for tt, a, b in pieces.tolist() if tt == t]
            assert [c for ab in mine for c in ab][1:-1:2] == [c for ab in mine for c in ab][2::2]  # contiguous
            assert (mine[0][0], mine[-1][1]) == (0, n) if n else mine == []
        assert all(a // SPAN == (b - 1) // SPAN for _, a, b in pieces.tolist())
        assert [p for lo, hi in bounds for p in range(lo, hi)] == list(range(len(pieces)))  # each piece, one thread
        assert len(bounds) <= max(1, min(threads, sum(sizes) // MIN_SPLIT))
    pieces, bounds = _pieces([MIN_SPLIT * 3, 5, MIN_SPLIT], 2)
    busy = [sum(b - a for _, a, b in pieces.tolist()[lo:hi]) for lo, hi in bounds]
    assert len(busy) == 2 and abs(busy[0] - busy[1]) <= 128  # an even share per thread (cuts are 64-aligned)


def test_a_batch_of_tensors_equals_one_call_per_tensor():
    g = torch.Generator().manual_seed(3)
    sizes = [7, MIN_SPLIT * 2 + 3, 64, 1, MIN_SPLIT - 1]
    bases = [torch.randn(n, generator=g) for n in sizes]
    stacks = [torch.randn(3, n, generator=g) * 0.01 for n in sizes]
    rule = Rule("draw", keys=(1, 2, 3), thr=(draw_threshold(0.4),) * 3)
    batch, outs = Batch(), []
    mixes = {with_base: Mix(rule, (1.0, 0.5, 2.0), (1.0, 0.5, 2.0), consensus=with_base, normalize=True, lam=0.9)
             for with_base in (True, False)}
    for with_base in (True, False):
        for b, st in zip(bases, stacks):
            outs.append(torch.full_like(b, math.nan))
            combine(b if with_base else None, list(st), mixes[with_base], outs[-1], batch)
    assert all(o.isnan().all() for o in outs)  # nothing written before run()
    batch.run()
    want = [combine_torch(b if with_base else None, list(st), mixes[with_base], torch.empty_like(b))
            for with_base in (True, False) for b, st in zip(bases, stacks)]
    assert all(torch.equal(o, w) for o, w in zip(outs, want))


def test_non_contiguous_or_non_float32_targets_take_the_torch_path_with_equal_results():
    g = torch.Generator().manual_seed(0)
    base, stack = torch.randn(64, 32, generator=g), torch.randn(2, 64, 32, generator=g)
    rule = Rule("draw", keys=(5, 6), thr=(draw_threshold(0.5),) * 2)
    mix = Mix(rule, (1.0, 0.5), (1.0, 0.5), consensus=True, normalize=True)
    want = combine(base, list(stack), mix, torch.empty(64, 32))
    out_t = torch.empty(32, 64).t()  # non-contiguous view
    assert torch.equal(combine(base, list(stack), mix, out_t), want)


def test_draws_keep_the_density_and_are_independent_across_sources_and_seeds():
    n = 200_000
    a, b, c = draws_torch(n, 1234), draws_torch(n, 1234, half=1), draws_torch(n, 1235)  # b shares a's hash
    for x in (a, b, c):
        assert int(x.min()) >= 0 and int(x.max()) < 2**DRAW_BITS
    for density in (0.1, 0.5, 0.9):
        kept = [(x < draw_threshold(density)).float() for x in (a, b, c)]
        assert all(abs(k.mean().item() - density) < 0.005 for k in kept)
        for x, y in ((0, 1), (0, 2), (1, 2)):
            assert abs((kept[x] * kept[y]).mean().item() - density**2) < 0.005  # independent sources
    # neighbouring entries are uncorrelated (a counter hash, not a slowly varying sequence)
    u = a.double() / 2**DRAW_BITS
    assert abs(torch.corrcoef(torch.stack([u[:-1], u[1:]]))[0, 1].item()) < 0.01
    # the high 32 bits of the key matter as much as the low ones
    assert not torch.equal(draws_torch(1000, 7), draws_torch(1000, 7 + 2**40))
    assert abs(torch.corrcoef(torch.stack([u, b.double()]))[0, 1].item()) < 0.01  # the halves of one hash


def test_draw_thresholds_cover_the_ends_exactly():
    for half in (0, 1):
        d = draws_torch(10_000, 99, half)
        assert bool((d < draw_threshold(1.0)).all()) and not bool((d < draw_threshold(0.0)).any())


def test_l1_sums_match_torch_for_every_rule():
    g = torch.Generator().manual_seed(3)
    row = torch.randn(50_001, generator=g)
    band = Rule("band", lo=(0.3, 0.1), hi=(2.0, 1.0))
    draw = Rule("draw", keys=(2**41 + 9,), thr=(draw_threshold(0.3), draw_threshold(0.6)))  # both halves of a hash
    for rule in (band, draw):
        for k in (0, 1):
            total, kept = abs_sums(row, rule, k)
            a = row.double().abs()
            assert math.isclose(total, a.sum().item(), rel_tol=1e-12)
            assert math.isclose(kept, (a * keep_mask(row, rule, k)).sum().item(), rel_tol=1e-12)


def test_an_unwritable_kernel_cache_falls_back_to_compiling_in_memory(tmp_path, monkeypatch):
    import numpy as np

    from evomerge.ops.fused import cache

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setenv("EVOMERGE_KERNEL_CACHE", str(blocker / "kernels"))
    kernel = cache.load(("l1", "band"))
    row = torch.tensor([0.5, -2.0, 1.0, 3.0])
    total, kept = kernel(row.numpy(), np.float32(0.9), np.float32(2.5), np.uint32(0), np.int32(0), False, 0, 4)
    assert (total, kept) == (6.5, 3.0) and not (blocker.parent / "kernels").exists()


@pytest.mark.parametrize("out_dtype", [torch.float32, torch.bfloat16])
def test_bfloat16_sources_merge_exactly_as_if_converted_to_float32_first(out_dtype):
    """Sources stay in their stored dtype: the kernel reads bf16 and rounds its output to
    bf16 itself, with the bits torch gives for the same float32 arithmetic then `.to()`."""
    g = torch.Generator().manual_seed(5)
    n = 2 * MIN_SPLIT + 77
    base = torch.randn(n, generator=g).bfloat16()
    sources = [(base.float() + torch.randn(n, generator=g) * 0.02).bfloat16() for _ in range(3)]
    for rule in rules(3, torch.stack([s.float() - base.float() for s in sources])):
        for consensus in (False, True):
            mix = Mix(rule, (0.7, -0.4, 1.3), (0.9, 0.5, 1.1), consensus=consensus, normalize=consensus, lam=1.3)
            ours = combine(base, sources, mix, torch.empty(n, dtype=out_dtype))
            want = combine(base.float(), [s.float() for s in sources], mix, torch.empty(n)).to(out_dtype)
            assert torch.equal(ours.view(torch.int16 if out_dtype == torch.bfloat16 else torch.int32),
                               want.view(torch.int16 if out_dtype == torch.bfloat16 else torch.int32)), rule.kind
            torch_path = combine_torch(base, sources, mix, torch.empty(n, dtype=out_dtype))
            assert torch.equal(torch_path, ours)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_histogram_thresholds_are_the_exact_order_statistics(dtype):
    from evomerge.ops.thresholds import SMALL, HistogramCache, TensorMemo, kth_magnitudes

    g = torch.Generator().manual_seed(11)
    n = 3 * SMALL + 5
    base = torch.randn(n, generator=g).to(dtype)
    sources = [(base.float() + torch.randn(n, generator=g) * 0.01).to(dtype) for _ in range(2)]
    sources.append(base.clone())  # an expert equal to the base: every |x| is 0
    sources[0][::7] = base[::7]  # many ties at zero
    mags = [(s.float() - base.float()).abs() for s in sources]
    requests = [(k, r) for k in range(3) for r in (1, 2, n // 7, n // 2, n - 3, n)]
    cache = HistogramCache()
    for _ in range(2):  # the second time from the kept histograms
        got = kth_magnitudes(base, sources, requests, TensorMemo(cache, ["a", "b", "c"]))
        for k, r in requests:
            assert got[(k, r)] == torch.kthvalue(mags[k], r).values.item(), (k, r)
    assert cache.nbytes == 3 * 2 * 4 * (1 << 16)

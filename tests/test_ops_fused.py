"""The fused CPU kernel against its torch formulation (bit for bit), and DARE's draws."""

from __future__ import annotations

import math

import pytest
import torch

from evomerge.ops.fused import DRAW_BITS, MIN_SPLIT, SPAN, Rule, combine, combine_torch, draw_threshold, draws_torch


def rules(K: int, stack: torch.Tensor) -> list[Rule]:
    a = stack.abs().reshape(K, -1)
    q = lambda k, f: torch.quantile(a[k, :10000], f).item()  # noqa: E731
    band = Rule("band", lo=tuple([q(k, 0.4) for k in range(K - 1)] + [-math.inf]),
                hi=tuple([math.inf] + [q(k, 0.9) for k in range(1, K)]))
    draw = Rule("draw", keys=tuple(2**40 * k + 11 for k in range(K)),
                thr=tuple(draw_threshold(d) for d in ([0.3, 1.0, 0.0, 0.7][:K])))
    return [Rule("dense"), band, draw, Rule("band", lo=(math.inf,) * K, hi=(-math.inf,) * K)]


@pytest.mark.parametrize("K,n", [(1, 1), (2, 1000), (3, 1000), (4, 999), (3, 4 * MIN_SPLIT + 12345)])  # last: threads
def test_kernel_equals_the_torch_formulation_bit_for_bit(K, n):
    g = torch.Generator().manual_seed(K * 1000 + n)
    base = torch.randn(n, generator=g)
    stack = torch.randn(K, n, generator=g) * 0.01
    stack[:, ::97] = 0.0  # zero deltas: no vote, no weight in the divisor
    scales, weights = [0.7, -0.4, 1.3, 0.05][:K], [0.9, -0.5, 1.1, 0.3][:K]
    for rule in rules(K, stack):
        for consensus in (False, True):
            for normalize in (False, True):
                ours = combine(base, stack, rule, scales, weights, consensus, normalize, 1.7, torch.empty(n))
                ref = combine_torch(base, stack, rule, scales, weights, consensus, normalize, 1.7, torch.empty(n))
                assert torch.equal(ours, ref), (rule.kind, consensus, normalize)


def test_ranges_cover_the_tensor_once_and_never_straddle_a_span():
    from evomerge.ops.fused import _split

    for n, threads in [(0, 2), (1, 2), (MIN_SPLIT, 4), (10 * MIN_SPLIT + 7, 3), (SPAN + 5, 1), (3 * SPAN - 1, 2)]:
        ranges = _split(n, threads)
        assert ranges[0][0] == 0 and ranges[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
        assert all(lo // SPAN == (hi - 1) // SPAN for lo, hi in ranges if hi > lo)
        assert len(ranges) <= max(threads, 1) + n // SPAN + 1


def test_non_contiguous_or_non_float32_targets_take_the_torch_path_with_equal_results():
    g = torch.Generator().manual_seed(0)
    base, stack = torch.randn(64, 32, generator=g), torch.randn(2, 64, 32, generator=g)
    rule = Rule("draw", keys=(5, 6), thr=(draw_threshold(0.5),) * 2)
    want = combine(base, stack, rule, [1.0, 0.5], [1.0, 0.5], True, True, 1.0, torch.empty(64, 32))
    out_t = torch.empty(32, 64).t()  # non-contiguous view
    assert torch.equal(combine(base, stack, rule, [1.0, 0.5], [1.0, 0.5], True, True, 1.0, out_t), want)


def test_draws_keep_the_density_and_are_independent_across_sources_and_seeds():
    n = 200_000
    a, b = draws_torch(n, 1234), draws_torch(n, 1235)
    assert int(a.min()) >= 0 and int(a.max()) < 2**DRAW_BITS
    for density in (0.1, 0.5, 0.9):
        kept_a = (a < draw_threshold(density)).float()
        kept_b = (b < draw_threshold(density)).float()
        assert abs(kept_a.mean().item() - density) < 0.005
        both = (kept_a * kept_b).mean().item()
        assert abs(both - density**2) < 0.005  # independent sources
    # neighbouring entries are uncorrelated (a counter hash, not a slowly varying sequence)
    u = a.double() / 2**DRAW_BITS
    assert abs(torch.corrcoef(torch.stack([u[:-1], u[1:]]))[0, 1].item()) < 0.01
    # the high 32 bits of the key matter as much as the low ones
    assert not torch.equal(draws_torch(1000, 7), draws_torch(1000, 7 + 2**40))


def test_draw_thresholds_cover_the_ends_exactly():
    d = draws_torch(10_000, 99)
    assert bool((d < draw_threshold(1.0)).all()) and not bool((d < draw_threshold(0.0)).any())


def test_loaded_kernels_leave_every_module_attribute_readable_by_vllms_kernel_scan():
    """vLLM's CPU platform calls vars(x).get("kernel") on every module attribute at engine start;
    numba's llvmlite used to break that scan, so a vLLM engine could not start after a merge."""
    import sys

    combine(torch.zeros(4), torch.ones(1, 4), Rule("band", lo=(0.5,), hi=(math.inf,)), [1.0], [1.0],
            True, True, 1.0, torch.empty(4))
    assert "llvmlite.binding.ffi" in sys.modules
    for module in list(sys.modules.values()):
        for value in list(getattr(module, "__dict__", {}).values()):
            if hasattr(value, "__dict__"):
                vars(value).get("kernel")  # raises on a non-mapping


def test_l1_sums_match_torch_for_every_rule():
    from evomerge.ops.fused import abs_sums, keep_mask

    g = torch.Generator().manual_seed(3)
    row = torch.randn(50_001, generator=g)
    for rule in (Rule("band", lo=(0.3,), hi=(2.0,)), Rule("draw", keys=(2**41 + 9,), thr=(draw_threshold(0.3),))):
        total, kept = abs_sums(row, rule, 0)
        a = row.double().abs()
        assert math.isclose(total, a.sum().item(), rel_tol=1e-12)
        assert math.isclose(kept, (a * keep_mask(row, rule, 0)).sum().item(), rel_tol=1e-12)


def test_an_unwritable_kernel_cache_falls_back_to_compiling_in_memory(tmp_path, monkeypatch):
    import numpy as np

    from evomerge.ops import fused

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setenv("EVOMERGE_KERNEL_CACHE", str(blocker / "kernels"))
    kernel = fused._load(("l1", "band"))
    row = torch.tensor([0.5, -2.0, 1.0, 3.0])
    total, kept = kernel(row.numpy(), np.float32(0.9), np.float32(2.5), np.uint32(0), np.uint32(0), 0, 4)
    assert (total, kept) == (6.5, 3.0) and not (blocker.parent / "kernels").exists()

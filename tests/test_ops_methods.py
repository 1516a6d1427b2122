"""Merge operators on hand-computed cases and on their defining properties."""

from __future__ import annotations

import math

import pytest
import torch

from evomerge.ops import METHODS, TensorParams, get_method
from evomerge.ops.slerp import slerp_
from evomerge.ops.fused import Rule
from evomerge.ops.fused.reference import keep_mask
from evomerge.ops.sparsify import kth_smallest, magnitude_band, outlier_band
from evomerge.ops.task_vector import tensor_seed
from evomerge.ops.workspace import Workspace


def params(method: str, n: int, weights=None, density=1.0, gamma=0.0, seed=0, name="w", **glob):
    spec = get_method(method)
    g = {p.name: p.default for p in spec.global_params()}
    g.update({k.replace("lam", "lambda") if k == "lam" else k: v for k, v in glob.items()})
    return TensorParams(name, method, list(weights or [1.0] * n), [density] * n, [gamma] * n, g, seed,
                        epsilons=[0.15] * n)


def run(method, base, tensors, p):
    return get_method(method).fn()(base, tensors, p, Workspace()).clone()


def test_linear_weighted_average_hand_case():
    a, b = torch.tensor([1.0, 2.0]), torch.tensor([5.0, -2.0])
    out = run("linear", None, [a, b], params("linear", 2, [1.0, 3.0]))
    assert torch.allclose(out, torch.tensor([4.0, -1.0]))  # (a + 3b) / 4
    out = run("linear", None, [a, b], params("linear", 2, [1.0, 3.0], normalize=False))
    assert torch.allclose(out, torch.tensor([16.0, -4.0]))


def test_task_arithmetic_hand_case():
    base = torch.tensor([1.0, 1.0, 1.0])
    a, b = base + torch.tensor([1.0, 0.0, -2.0]), base + torch.tensor([0.5, 1.0, 0.0])
    out = run("task_arithmetic", base, [a, b], params("task_arithmetic", 2, [1.0, 2.0], lam=0.5))
    assert torch.allclose(out, base + 0.5 * torch.tensor([2.0, 2.0, -2.0]))


def test_ties_hand_case():
    base = torch.zeros(4)
    a = torch.tensor([3.0, -1.0, 0.5, -4.0])
    b = torch.tensor([-1.0, -2.0, 1.0, 2.0])
    # density 0.5 keeps the 2 largest |tau| per source: a -> [3, 0, 0, -4], b -> [0, -2, 0, 2]
    # elected signs (sum): [+, -, +(0 counts +), -]; agreeing: a0, b1, none, a3
    out = run("ties", base, [a, b], params("ties", 2, density=0.5))
    assert torch.allclose(out, torch.tensor([3.0, -2.0, 0.0, -4.0]))
    # without normalize the kept entries are summed, weighted
    out = run("ties", base, [a, b], params("ties", 2, [2.0, 1.0], density=0.5, normalize=False))
    assert torch.allclose(out, torch.tensor([6.0, -2.0, 0.0, -8.0]))


def test_ties_single_source_full_density_is_task_arithmetic():
    torch.manual_seed(0)
    base, a = torch.randn(50), torch.randn(50)
    ties = run("ties", base, [a], params("ties", 1, [0.7], normalize=False, lam=1.3))
    ta = run("task_arithmetic", base, [a], params("task_arithmetic", 1, [0.7], lam=1.3))
    assert torch.allclose(ties, ta)


def trimmed(d: torch.Tensor, band: tuple[float, float]) -> torch.Tensor:
    return d * keep_mask(d, Rule("band", lo=(band[0],), hi=(band[1],)), 0)


def test_magnitude_trim_keeps_exactly_the_largest():
    torch.manual_seed(1)
    d = torch.randn(1000)
    kept = trimmed(d, magnitude_band(1000, 0.3, lambda k: kth_smallest(d.abs(), k)))
    assert int((kept != 0).sum()) == 300
    assert kept.abs().min() == 0 and d.abs()[kept != 0].min() >= d.abs()[kept == 0].max()


def test_breadcrumbs_drops_outliers_and_small_entries():
    d = torch.arange(1.0, 11.0)  # |d| = 1..10
    kth = lambda k: kth_smallest(d.abs(), k)  # noqa: E731
    out = trimmed(d, outlier_band(10, density=0.6, gamma=0.2, kth=kth))  # keep 6, drop top 2 and bottom 2
    assert torch.equal(out, torch.tensor([0, 0, 3, 4, 5, 6, 7, 8, 0, 0.0]))
    out = trimmed(d, outlier_band(10, density=0.9, gamma=0.2, kth=kth))  # both cannot fit: 1 outlier dropped
    assert torch.equal(out, torch.tensor([1, 2, 3, 4, 5, 6, 7, 8, 9, 0.0]))


@pytest.mark.parametrize("method", ["dare_linear", "dare_ties"])
def test_dare_is_seeded_by_tensor_name_and_reproducible(method):
    torch.manual_seed(2)
    base, a, b = torch.randn(400), torch.randn(400), torch.randn(400)
    p = params(method, 2, density=0.4, seed=7, name="model.layers.0.mlp.up_proj.weight")
    first = run(method, base, [a, b], p)
    run(method, base, [b, a], params(method, 2, density=0.4, seed=7, name="other"))  # other draws between
    assert torch.equal(first, run(method, base, [a, b], p))
    assert not torch.equal(first, run(method, base, [a, b], params(method, 2, density=0.4, seed=8,
                                                                     name="model.layers.0.mlp.up_proj.weight")))
    assert tensor_seed(7, "x", 0) != tensor_seed(7, "x", 1) != tensor_seed(7, "y", 0)


def test_dare_drops_the_right_fraction_and_preserves_expectation():
    torch.manual_seed(3)
    n = 20000
    base, a = torch.zeros(n), torch.randn(n)
    out = run("dare_linear", base, [a], params("dare_linear", 1, density=0.25))
    kept = out != 0
    assert abs(kept.float().mean().item() - 0.25) < 0.02
    assert torch.allclose(out[kept], a[kept] * 4)  # survivors rescaled by 1 / (1 - p)
    mean = torch.stack([run("dare_linear", base, [a], params("dare_linear", 1, density=0.25, seed=s))
                        for s in range(200)]).mean(0)
    # E[out] = tau: the error of a mean of 200 draws is about |tau| * sqrt(3 / 200)
    assert (mean - a).abs().mean() < 0.15 * a.abs().mean()


@pytest.mark.parametrize("method", ["dare_linear", "dare_ties", "ties", "breadcrumbs"])
def test_sparsifying_methods_at_density_one_reduce_to_their_combination(method):
    torch.manual_seed(4)
    base, a, b = torch.randn(64), torch.randn(64), torch.randn(64)
    out = run(method, base, [a, b], params(method, 2, [0.6, 0.9], density=1.0, normalize=False))
    consensus = get_method(method).consensus
    plain = "ties" if consensus else "task_arithmetic"
    ref = run(plain, base, [a, b], params(plain, 2, [0.6, 0.9], normalize=False))
    assert torch.allclose(out, ref)


def test_l1_rescale_matches_the_norm_of_the_task_vector():
    torch.manual_seed(5)
    base, a = torch.zeros(1000), torch.randn(1000)
    out = run("dare_linear", base, [a], params("dare_linear", 1, density=0.3, rescale="l1"))
    assert math.isclose(out.abs().sum().item(), a.abs().sum().item(), rel_tol=1e-4)


def test_slerp_endpoints_colinear_fallback_and_arc():
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    assert torch.allclose(slerp_(a.clone(), b, 0.0), a)
    assert torch.allclose(slerp_(a.clone(), b, 1.0), b, atol=1e-6)
    mid = slerp_(a.clone(), b, 0.5)
    assert torch.allclose(mid, torch.tensor([1.0, 1.0]) / math.sqrt(2))  # on the arc, not the chord
    c = torch.tensor([2.0, 2.0])
    assert torch.allclose(slerp_(torch.tensor([1.0, 1.0]), c, 0.25), torch.tensor([1.25, 1.25]))


def test_every_registered_method_runs_and_keeps_the_base_when_sources_equal_it():
    torch.manual_seed(6)
    base = torch.randn(3, 5)
    for name, spec in METHODS.items():
        n = 1 if spec.max_sources == 1 or name == "slerp" else max(2, spec.min_sources)
        kw = {"t": 0.3} if name in ("slerp", "nearswap") else {}
        out = run(name, base, [base.clone() for _ in range(n)], params(name, n, density=0.5, **kw))
        assert torch.allclose(out, base, atol=1e-6), name


def test_bracketed_selection_is_exact_on_large_tensors_with_and_without_ties():
    torch.manual_seed(7)
    smooth = torch.randn(1_500_000).abs()
    tied = (torch.randn(1_500_000) * 50).round().abs()  # few distinct values: bracket edges tie
    for a in (smooth, tied):
        n = a.numel()
        for k in (1, 5, n // 7, n // 2, n - 3, n):
            assert kth_smallest(a, k) == torch.kthvalue(a, k).values.item(), k


def test_nearswap_swaps_in_near_entries_only():
    base = torch.tensor([0.0, 0.0, 0.0])
    other = torch.tensor([0.1, 0.4, 2.0])
    out = run("nearswap", base, [other], params("nearswap", 1, t=0.2))
    # w = clamp(0.2 / |d|, 0, 1) = [1, 0.5, 0.1]
    assert torch.allclose(out, torch.tensor([0.1, 0.2, 0.2]))


def test_model_stock_ratio_from_the_angle_between_task_vectors():
    base = torch.zeros(2)
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])  # orthogonal: cos 0 -> t 0, the base
    assert torch.allclose(run("model_stock", base, [a, b], params("model_stock", 2)), base)
    c = torch.tensor([1.0, 1.0])  # cos 45 deg between a and c: t = 2c/(1+c) with c = 0.7071
    t = 2 * 0.5 ** 0.5 / (1 + 0.5 ** 0.5)
    assert torch.allclose(run("model_stock", base, [a, c], params("model_stock", 2)), t * (a + c) / 2)


def test_nuslerp_midpoint_of_orthogonal_unit_vectors_and_weights_set_t():
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    mid = run("nuslerp", None, [a, b], params("nuslerp", 2, [1.0, 1.0]))
    assert torch.allclose(mid, torch.tensor([0.5 ** 0.5, 0.5 ** 0.5]))
    end = run("nuslerp", None, [a, b], params("nuslerp", 2, [0.0, 3.0]))  # t = 3 / 3 = 1
    assert torch.allclose(end, b, atol=1e-6)


def _della(base, x, seed=0, rescale="none"):
    p = params("della_linear", 1, density=0.5, seed=seed, rescale=rescale)
    p.epsilons = [0.3]
    return run("della_linear", base, [x], p)


def test_della_keeps_density_on_average_more_of_the_large_entries_and_is_unbiased():
    torch.manual_seed(8)
    base, x = torch.zeros(64, 512), torch.randn(64, 512)
    kept = _della(base, x) != 0
    rank = x.abs().argsort(dim=1).argsort(dim=1)
    p = 0.2 + 0.6 * rank.float() / 511  # keep probability: 0.2 for a row's smallest, 0.8 its largest
    assert abs(kept.float().mean().item() - 0.5) < 0.01
    for band in (rank < 64, rank >= 448):
        assert abs(kept[band].float().mean().item() - p[band].mean().item()) < 0.02
    runs = torch.stack([_della(base, x, s, "inverse_density") for s in range(100)])  # the paper's 1/p_i
    assert (runs.mean(0) - x).abs().mean() < 0.15 * x.abs().mean()  # unbiased: E = x


def test_sce_weights_by_mean_square_and_drops_disagreeing_signs():
    base = torch.zeros(3)
    a, b = torch.tensor([2.0, 2.0, -2.0]), torch.tensor([1.0, -1.0, 1.0])  # mean squares 4 and 1
    out = run("sce", base, [a, b], params("sce", 2))
    # weights 0.8 / 0.2; signs elected by the sum: [+, +, -]; b disagrees at 1 and 2
    assert torch.allclose(out, torch.tensor([(0.8 * 2 + 0.2 * 1) / 1.0, 2.0, -2.0]))


def test_ram_keeps_unique_changes_in_full_and_averages_shared_ones():
    base = torch.zeros(4)
    a, b = torch.tensor([1.0, 2.0, 0.0, 0.0]), torch.tensor([0.0, 4.0, -3.0, 1e-7])
    out = run("ram", base, [a, b], params("ram", 2))
    assert torch.allclose(out, torch.tensor([1.0, 3.0, -3.0, 0.0]))  # unique, shared mean, unique, unchanged
    # RAM+: a has 1 shared / 1 unique change (rho 1, clipped to alpha 0.2): its unique one x 1.1
    out = run("ramplus_tl", base, [a, b], params("ramplus_tl", 2, r=0.5))
    assert torch.allclose(out, torch.tensor([1.1, 3.0, -3.3, 0.0]))

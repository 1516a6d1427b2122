"""The methods beyond TIES/DARE (DELLA, SCE, Model Stock, NuSLERP, Karcher, Arcee Fusion,
NearSwap, Multi-SLERP, RAM, RAM+) give mergekit 0.1.5's tensors for the same config, in float32, bfloat16 and float16
compute; randomized DELLA agrees with it in distribution."""

from __future__ import annotations

import pytest
import torch

from helpers_engine import load_tensors
from helpers_mergekit import have_mergekit, oracle_run, ours_and_theirs

pytestmark = [pytest.mark.mergekit, pytest.mark.skipif(
    not have_mergekit(), reason="mergekit oracle venv .venv-mergekit absent (scripts/setup.sh creates it)")]

DTYPES = ("float32", "bfloat16", "float16")


def base_configs(f):
    b, e0, e1, e2 = (str(f[k]) for k in ("base", "e0", "e1", "e2"))
    three = [{"model": e0}, {"model": e1}, {"model": e2}]
    return {
        "nearswap": {"merge_method": "nearswap", "base_model": b, "models": [{"model": b}, {"model": e0}],
                     "parameters": {"t": 0.002}},
        "model_stock": {"merge_method": "model_stock", "base_model": b, "models": [{"model": b}, *three]},
        "model_stock_rows": {"merge_method": "model_stock", "base_model": b, "models": three,
                             "parameters": {"filter_wise": True}},
        "nuslerp": {"merge_method": "nuslerp", "models": [{"model": e0, "parameters": {"weight": 0.3}},
                                                          {"model": e1, "parameters": {"weight": 0.7}}]},
        "nuslerp_base_rows": {"merge_method": "nuslerp", "base_model": b, "models": [
            {"model": e0, "parameters": {"weight": 1.0}}, {"model": e2, "parameters": {"weight": [0.5, 2.0]}}],
            "parameters": {"nuslerp_flatten": False, "nuslerp_row_wise": True}},
        "nuslerp_columns": {"merge_method": "nuslerp", "models": [{"model": e1, "parameters": {"weight": 2.0}},
                                                                  {"model": e2, "parameters": {"weight": 1.0}}],
                            "parameters": {"nuslerp_flatten": False}},
        "karcher": {"merge_method": "karcher", "models": three, "parameters": {"max_iter": 6}},
        "sce": {"merge_method": "sce", "base_model": b, "models": three, "parameters": {"select_topk": 0.4}},
        "sce_all": {"merge_method": "sce", "base_model": b, "models": three[:2]},
        "arcee_fusion": {"merge_method": "arcee_fusion", "base_model": b, "models": [{"model": b}, {"model": e1}]},
        "multislerp": {"merge_method": "multislerp", "models": [{"model": e0, "parameters": {"weight": 0.2}},
                                                                {"model": e1, "parameters": {"weight": 0.5}},
                                                                {"model": e2, "parameters": {"weight": 0.3}}]},
        "multislerp_base": {"merge_method": "multislerp", "base_model": b, "parameters": {"normalize_weights": False},
                            "models": [{"model": e0, "parameters": {"weight": 1.0}},
                                       {"model": e1, "parameters": {"weight": 2.0}}]},
        "ram": {"merge_method": "ram", "base_model": b, "models": three, "parameters": {"epsilon": 0.012}},
        "ramplus_tl": {"merge_method": "ramplus_tl", "base_model": b, "models": three[:2],
                       "parameters": {"epsilon": 0.012, "r": 0.5, "alpha": 0.8}},
        "della_full": {"merge_method": "della", "base_model": b, "models": [
            {"model": e0, "parameters": {"weight": 0.9, "density": 1.0}},
            {"model": e1, "parameters": {"weight": 0.6, "density": 1.0}}], "parameters": {"lambda": 1.2}},
    }


EXACT = list(base_configs({k: "x" for k in ("base", "e0", "e1", "e2")}))


def configs(f):
    out = {f"{n}-{dt}": {**c, "dtype": dt} for n, c in base_configs(f).items() for dt in DTYPES}
    b, e0 = str(f["base"]), str(f["e0"])
    out["della_linear_half"] = {"merge_method": "della_linear", "base_model": b, "models": [
        {"model": e0, "parameters": {"weight": 1.0, "density": 0.5, "epsilon": 0.2}}], "dtype": "float32"}
    return out


@pytest.fixture(scope="module")
def oracle(tiny_family, tmp_path_factory):
    return oracle_run(configs(tiny_family), tmp_path_factory.mktemp("mergekit_methods"))


pair = ours_and_theirs


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("method", EXACT)
def test_same_tensors_as_mergekit(oracle, method, dt):
    ours, theirs = pair(oracle, f"{method}-{dt}")
    assert set(ours) == set(theirs)
    for k in ours:
        assert ours[k].dtype == getattr(torch, dt), k
        if method in ("arcee_fusion", "ramplus_tl"):  # mergekit's float32 mask / factors promote its result
            theirs[k] = theirs[k].to(ours[k].dtype)
        assert theirs[k].dtype == ours[k].dtype, k
        assert torch.equal(ours[k], theirs[k]), (k, (ours[k] != theirs[k]).sum().item())


def test_della_matches_mergekit_in_distribution(oracle, tiny_family):
    """Independent draws; the defining properties agree: about `density` kept, more likely the
    larger the entry within its row (p from 0.3 to 0.7 here), survivors rescaled to the L1 norm."""
    ours, theirs = pair(oracle, "della_linear_half")
    base, e0 = load_tensors(tiny_family["base"]), load_tensors(tiny_family["e0"])
    name = "model.layers.1.mlp.down_proj.weight"
    tau = e0[name] - base[name]
    rank = tau.abs().argsort(dim=1).argsort(dim=1).float() / (tau.shape[1] - 1)
    for merged in (ours[name], theirs[name]):
        delta = merged - base[name]
        kept = delta != 0
        assert abs(kept.float().mean().item() - 0.5) < 0.03
        low, high = kept[rank < 0.25].float().mean().item(), kept[rank > 0.75].float().mean().item()
        assert abs(low - 0.35) < 0.05 and abs(high - 0.65) < 0.05, (low, high)
        scale = delta[kept] / tau[kept]
        l1 = (tau.abs().sum() / tau[kept].abs().sum()).item()
        assert scale.std() < 1e-3 and abs(scale.mean().item() - l1) < 1e-3 * l1
    assert not torch.equal(ours[name], theirs[name])

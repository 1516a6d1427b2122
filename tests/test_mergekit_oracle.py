"""Our tensors equal mergekit 0.1.5's for the same config on small local models.

mergekit runs from its own venv (.venv-mergekit, made by scripts/setup.sh) as an oracle only.
Tolerance: float32 round-off (sums in a different order), far below any merge difference.
"""

from __future__ import annotations

import pytest
import torch

from evomerge.engine import merge_to_disk
from evomerge.mergekit_config import from_mergekit
from helpers_engine import load_tensors
from helpers_mergekit import have_mergekit, run_mergekit

pytestmark = [pytest.mark.mergekit, pytest.mark.skipif(
    not have_mergekit(), reason="mergekit oracle venv .venv-mergekit absent (scripts/setup.sh creates it)")]

ATTN_MLP = [{"filter": "self_attn", "value": [0.0, 0.5, 0.3, 0.7, 1.0]},
            {"filter": "mlp", "value": [1.0, 0.5, 0.7, 0.3, 0.0]}, {"value": 0.5}]


def configs(f):
    b, e0, e1, e2 = (str(f[k]) for k in ("base", "e0", "e1", "e2"))
    return {
        "linear": {"merge_method": "linear", "models": [
            {"model": e0, "parameters": {"weight": 0.3}}, {"model": e1, "parameters": {"weight": [0.5, 1.0]}}],
            "dtype": "float32"},
        "task_arithmetic": {"merge_method": "task_arithmetic", "base_model": b, "models": [
            {"model": e0, "parameters": {"weight": 0.7}},
            {"model": e1, "parameters": {"weight": [{"filter": "self_attn", "value": [0.2, 1.0]},
                                                    {"filter": "mlp", "value": 0.5}, {"value": 1.0}]}}],
            "parameters": {"lambda": 0.8}, "dtype": "float32"},
        "ties": {"merge_method": "ties", "base_model": b, "models": [
            {"model": b}, {"model": e0, "parameters": {"density": 0.4}},
            {"model": e1, "parameters": {"density": [0.3, 0.9], "weight": 0.6}}, {"model": e2}],
            "parameters": {"weight": 1.2, "density": 0.5}, "dtype": "float32"},
        "ties_sum": {"merge_method": "ties", "base_model": b, "models": [
            {"model": e0, "parameters": {"weight": 1.0, "density": 0.3}},
            {"model": e1, "parameters": {"weight": 0.8, "density": 0.6}}],
            "parameters": {"normalize": False, "int8_mask": True, "lambda": 1.5}, "dtype": "float32"},
        "dare_ties_full": {"merge_method": "dare_ties", "base_model": b, "models": [
            {"model": e0, "parameters": {"weight": 0.9, "density": 1.0}},
            {"model": e1, "parameters": {"weight": [0.4, 1.1], "density": 1.0}}], "dtype": "float32"},
        "dare_linear_full": {"merge_method": "dare_linear", "base_model": b, "models": [
            {"model": e0, "parameters": {"weight": 0.9}}, {"model": e1, "parameters": {"weight": 0.5}}],
            "parameters": {"density": 1.0}, "dtype": "float32"},
        "breadcrumbs": {"merge_method": "breadcrumbs", "base_model": b, "models": [
            {"model": e0, "parameters": {"weight": 1.0, "density": 0.8, "gamma": 0.05}},
            {"model": e1, "parameters": {"weight": 0.7, "density": 0.6, "gamma": 0.1}}], "dtype": "float32"},
        "breadcrumbs_ties": {"merge_method": "breadcrumbs_ties", "base_model": b, "models": [
            {"model": e0, "parameters": {"weight": 1.0, "density": 0.7, "gamma": 0.05}},
            {"model": e1, "parameters": {"weight": 0.7, "density": 0.7}},
            {"model": e2, "parameters": {"weight": 0.5, "density": 0.9}}],
            "parameters": {"gamma": 0.02, "normalize": True}, "dtype": "float32"},
        "slerp": {"merge_method": "slerp", "base_model": b, "models": [{"model": b}, {"model": e0}],
                  "parameters": {"t": ATTN_MLP}, "dtype": "float32"},
        "slerp_far": {"merge_method": "slerp", "base_model": e1, "models": [{"model": e1}, {"model": e2}],
                      "parameters": {"t": 0.35}, "dtype": "float32"},
        "ties_slices": {"merge_method": "ties", "base_model": b, "slices": [
            {"sources": [{"model": b, "layer_range": [0, 2]},
                         {"model": e0, "layer_range": [0, 2], "parameters": {"weight": [0.2, 0.8], "density": 0.5}},
                         {"model": e1, "layer_range": [0, 2], "parameters": {"weight": 1.0, "density": 0.7}}]},
            {"sources": [{"model": b, "layer_range": [2, 4]},
                         {"model": e0, "layer_range": [2, 4], "parameters": {"weight": [0.2, 1.0], "density": 0.5}},
                         {"model": e1, "layer_range": [2, 4], "parameters": {"weight": [1.0, 0.1], "density": 0.7}}],
             "parameters": {"normalize": True}}],
            "parameters": {"lambda": 1.0}, "dtype": "float32"},
        "dare_linear_half": {"merge_method": "dare_linear", "base_model": b, "models": [
            {"model": e0, "parameters": {"weight": 1.0, "density": 0.5}}], "dtype": "float32"},
        "stack": {"merge_method": "passthrough", "slices": [
            {"sources": [{"model": e0, "layer_range": [0, 3]}]},
            {"sources": [{"model": e1, "layer_range": [1, 4]}]},
            {"sources": [{"model": e0, "layer_range": [3, 4]}]}], "dtype": "float32"},
    }


@pytest.fixture(scope="module")
def oracle(tiny_family, tmp_path_factory):
    root = tmp_path_factory.mktemp("mergekit")
    cfgs = configs(tiny_family)
    return cfgs, run_mergekit(cfgs, root), root


def ours(oracle, name):
    cfgs, _, root = oracle
    return load_tensors(merge_to_disk(from_mergekit(cfgs[name]), root / f"ours_{name}"))


def theirs(oracle, name):
    out = oracle[1][name]
    assert out.is_dir(), out.read_text()
    return load_tensors(out)


EXACT = ["linear", "task_arithmetic", "ties", "ties_sum", "dare_ties_full", "dare_linear_full",
         "breadcrumbs", "breadcrumbs_ties", "slerp", "slerp_far", "ties_slices"]


@pytest.mark.parametrize("name", EXACT)
def test_same_tensors_as_mergekit(oracle, name):
    a, b = ours(oracle, name), theirs(oracle, name)
    assert set(a) == set(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        torch.testing.assert_close(a[k], b[k], rtol=2e-6, atol=2e-7, msg=f"{name}: {k}")


def test_dare_matches_mergekit_in_distribution(oracle, tiny_family):
    """Random drops differ from mergekit's draws; the defining properties agree."""
    a, b = ours(oracle, "dare_linear_half"), theirs(oracle, "dare_linear_half")
    base, e0 = load_tensors(tiny_family["base"]), load_tensors(tiny_family["e0"])
    for name in ("model.layers.1.mlp.down_proj.weight", "model.embed_tokens.weight"):
        tau = e0[name] - base[name]
        for merged in (a[name], b[name]):
            delta = merged - base[name]
            kept = delta != 0
            assert abs(kept.float().mean().item() - 0.5) < 0.05  # drop rate p = 1 - density
            scale = delta[kept] / tau[kept]  # survivors all rescaled by one factor ...
            l1 = (tau.abs().sum() / tau[kept].abs().sum()).item()  # ... that restores the L1 norm
            assert scale.std() < 1e-3 and abs(scale.mean().item() - l1) < 1e-3 * l1
        assert not torch.equal(a[name], b[name])  # independent draws


def test_layer_stacking_slices_become_a_dataflow_path(oracle):
    r = from_mergekit(oracle[0]["stack"])
    assert r.kind == "dataflow" and [s.model for s in r.sources] == [oracle[0]["stack"]["slices"][0]["sources"][0]["model"],
                                                                      oracle[0]["stack"]["slices"][1]["sources"][0]["model"]]
    assert [(h.source, h.layer) for h in r.layers] == [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (1, 3), (0, 3)]
    a, b = ours(oracle, "stack"), theirs(oracle, "stack")
    assert set(a) == set(b)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)

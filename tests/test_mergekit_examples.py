"""mergekit's own example configs (examples/*.yml in its repository, as of 0.1.5), adapted to
the tiny local family (model names -> local models, 40 layers -> 4): our tensors equal mergekit
0.1.5's bit for bit. Plus a config with no `dtype` on bfloat16 checkpoints: mergekit then
computes in the stored dtype, and so do we."""

from __future__ import annotations

import pytest
import torch

from evomerge.engine import merge_to_disk
from evomerge.mergekit_config import from_mergekit
from helpers_engine import build_family, load_tensors
from helpers_mergekit import have_mergekit, run_mergekit

pytestmark = [pytest.mark.mergekit, pytest.mark.skipif(
    not have_mergekit(), reason="mergekit oracle venv .venv-mergekit absent (scripts/setup.sh creates it)")]


def examples(f, g):
    base, orca, platy, wizard, math = (str(f[k]) for k in ("base", "e0", "e1", "e2", "e2"))
    return {
        "arcee_fusion": {"models": [{"model": orca}, {"model": platy}], "merge_method": "arcee_fusion",
                         "base_model": orca, "dtype": "bfloat16"},
        "bio-merge": {"models": [{"model": orca, "parameters": {"density": 0.5, "weight": 0.5}},
                                 {"model": platy, "parameters": {"density": 0.5, "weight": 0.5}}],
                      "merge_method": "ties", "base_model": base,
                      "parameters": {"normalize": False, "int8_mask": True}, "dtype": "float16"},
        "gradient-slerp": {"slices": [{"sources": [{"model": orca, "layer_range": [0, 4]},
                                                   {"model": platy, "layer_range": [0, 4]}]}],
                           "merge_method": "slerp", "base_model": orca,
                           "parameters": {"t": [{"filter": "self_attn", "value": [0, 0.5, 0.3, 0.7, 1]},
                                                {"filter": "mlp", "value": [1, 0.5, 0.7, 0.3, 0]}, {"value": 0.5}]},
                           "dtype": "float16"},
        "linear": {"models": [{"model": orca, "parameters": {"weight": 1.0}}, {"model": wizard, "parameters": {"weight": 0.3}},
                              {"model": platy, "parameters": {"weight": 0.5}}], "merge_method": "linear", "dtype": "float16"},
        "orcamini-platy-44layer": {"slices": [{"sources": [{"model": orca, "layer_range": [0, 3]}]},
                                              {"sources": [{"model": platy, "layer_range": [2, 4]}]}],
                                   "merge_method": "passthrough", "dtype": "float16"},
        "ties": {"models": [{"model": orca, "parameters": {"density": [1, 0.7, 0.1], "weight": 1.0}},
                            {"model": platy, "parameters": {"density": 0.5, "weight": [0, 0.3, 0.7, 1]}},
                            {"model": math, "parameters": {"density": 0.33, "weight": [{"filter": "mlp", "value": 0.5},
                                                                                         {"value": 0}]}}],
                 "merge_method": "ties", "base_model": base, "parameters": {"normalize": True, "int8_mask": True},
                 "dtype": "float16"},
        "stored-bf16-no-dtype": {"models": [{"model": str(g["e0"]), "parameters": {"density": 0.5, "weight": 0.7}},
                                            {"model": str(g["e1"]), "parameters": {"density": 0.6, "weight": 0.5}}],
                                 "merge_method": "ties", "base_model": str(g["base"])},
    }


@pytest.fixture(scope="module")
def oracle(tiny_family, tmp_path_factory):
    bf16 = build_family(tmp_path_factory.mktemp("family_bf16"), n_experts=2, dtype=torch.bfloat16)
    root = tmp_path_factory.mktemp("mergekit_examples")
    cfgs = examples(tiny_family, bf16)
    return cfgs, run_mergekit(cfgs, root), root


@pytest.mark.parametrize("name", list(examples({k: "x" for k in ("base", "e0", "e1", "e2")},
                                               {k: "x" for k in ("base", "e0", "e1")})))
def test_example_gives_mergekits_tensors(oracle, name):
    cfgs, outs, root = oracle
    assert outs[name].is_dir(), outs[name].read_text()
    recipe = from_mergekit(cfgs[name])
    ours, theirs = load_tensors(merge_to_disk(recipe, root / f"ours_{name}")), load_tensors(outs[name])
    assert set(ours) == set(theirs)
    for k in ours:
        if name == "arcee_fusion":  # mergekit's float32 mask promotes its result to float32
            theirs[k] = theirs[k].to(ours[k].dtype)
        assert ours[k].dtype == theirs[k].dtype and torch.equal(ours[k], theirs[k]), (k, (ours[k] != theirs[k]).sum())
    if name == "stored-bf16-no-dtype":
        assert recipe.compute_dtype == "bfloat16" and recipe.dtype is None

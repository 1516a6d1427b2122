"""Config shapes beyond models/slices: `modules:`, tokenizer union and the `tokenizer:` block,
filters on the layers' norms (`layernorm`) and any filter that claims whole layer groups on the
models' tensor names (`layers`, `model.norm`, `attn`, ...), a final norm whose value differs from the first
layer's, frankenmerges whose ends come from different models, passthrough `scale` filtered
to modules;
our tensors equal mergekit 0.1.5's (bfloat16 compute). And the refusals that remain."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from evomerge.engine import merge_to_disk
from evomerge.errors import ConfigError
from evomerge.mergekit_config import from_mergekit, to_mergekit
from helpers_engine import build_family, load_tensors
from helpers_mergekit import have_mergekit, run_mergekit


def configs(f):
    b, e0, e1 = (str(f[k]) for k in ("base", "e0", "e1"))
    ties = {"merge_method": "ties", "base_model": b, "dtype": "bfloat16", "models": [
        {"model": e0, "parameters": {"weight": 1.0, "density": 0.5}}, {"model": e1, "parameters": {"weight": 0.5, "density": 0.7}}]}
    return {
        "union": {**ties, "tokenizer_source": "union"},
        "inert_density": {**ties, "merge_method": "task_arithmetic"},  # mergekit ignores density there
        "tokenizer_block": {**ties, "tokenizer": {"source": "union"}},
        "modules": {"merge_method": "ties", "base_model": b, "dtype": "bfloat16",
                    "parameters": {"density": 0.5, "weight": [{"filter": "mlp", "value": 0.3}, {"value": 0.9}]},
                    "modules": {"default": {"models": [{"model": e0}, {"model": e1, "parameters": {"weight": 0.8}}],
                                            "parameters": {"weight": [{"filter": "self_attn", "value": [0.2, 1.0]}]}}}},
        "ends_from_two_models": {"merge_method": "passthrough", "dtype": "bfloat16", "slices": [
            {"sources": [{"model": e0, "layer_range": [0, 2]}]},
            {"sources": [{"model": e1, "layer_range": [1, 4]}]}]},
        "slerp_layernorm": {"merge_method": "slerp", "base_model": b, "models": [{"model": b}, {"model": e0}],
                            "dtype": "bfloat16", "parameters": {"t": [
                                {"filter": "self_attn", "value": [0, 0.5, 1]}, {"filter": "mlp", "value": [1, 0.5, 0]},
                                {"filter": "layernorm", "value": 0.2}, {"value": 0.6}]}},
        "norm_before_layernorm": {"merge_method": "slerp", "base_model": b, "models": [{"model": b}, {"model": e0}],
                                  "dtype": "bfloat16", "parameters": {"t": [
                                      {"filter": "norm", "value": 0.9}, {"filter": "layernorm", "value": 0.2}, {"value": 0.6}]}},
        "filters_on_whole_groups": {"merge_method": "slerp", "base_model": b, "models": [{"model": b}, {"model": e0}],
                                    "dtype": "bfloat16", "parameters": {"t": [
                                        {"filter": "self_attn", "value": 0.3}, {"filter": "layers", "value": 0.7},
                                        {"filter": "model.norm", "value": 0.9}, {"value": 0.1}]}},
        "short_filters": {"merge_method": "ties", "base_model": b, "dtype": "bfloat16", "models": [
            {"model": e0, "parameters": {"density": 0.6, "weight": [
                {"filter": "embed", "value": 0.2}, {"filter": "head", "value": 0.4},
                {"filter": "attn", "value": [0.5, 1.0]}, {"value": 1.0}]}},
            {"model": e1, "parameters": {"weight": 0.8, "density": 0.6}}]},
        "final_norm_from_last_slice": {"merge_method": "ties", "base_model": b, "dtype": "bfloat16", "slices": [
            {"sources": [{"model": b, "layer_range": [0, 2]},
                         {"model": e0, "layer_range": [0, 2], "parameters": {"weight": [0.1, 1.0], "density": 0.5}}]},
            {"sources": [{"model": b, "layer_range": [2, 4]},
                         {"model": e0, "layer_range": [2, 4], "parameters": {"weight": 0.7, "density": 0.5}}]}]},
        "scale_filtered": {"merge_method": "passthrough", "dtype": "bfloat16", "slices": [
            {"sources": [{"model": e0, "layer_range": [0, 3]}]},
            {"sources": [{"model": e0, "layer_range": [2, 4]}],
             "parameters": {"scale": [{"filter": "o_proj", "value": 0.0}, {"filter": "down_proj", "value": [0.5, 0.25]},
                                      {"value": 1.0}]}}]},
    }


@pytest.fixture(scope="module")
def oracle(tiny_family, tmp_path_factory):
    if not have_mergekit():
        pytest.skip("mergekit oracle venv .venv-mergekit absent (scripts/setup.sh creates it)")
    root = tmp_path_factory.mktemp("mergekit_shapes")
    cfgs = configs(tiny_family)
    return cfgs, run_mergekit(cfgs, root), root


@pytest.mark.mergekit
@pytest.mark.parametrize("name", list(configs({k: "x" for k in ("base", "e0", "e1")})))
def test_same_tensors_as_mergekit(oracle, name):
    cfgs, outs, root = oracle
    assert outs[name].is_dir(), outs[name].read_text()
    ours, theirs = load_tensors(merge_to_disk(from_mergekit(cfgs[name]), root / f"ours_{name}")), load_tensors(outs[name])
    assert set(ours) == set(theirs)
    for k in ours:
        assert ours[k].dtype == theirs[k].dtype and torch.equal(ours[k], theirs[k]), k


def test_shapes_read_into_recipes(tiny_family):
    cfgs = configs(tiny_family)
    assert from_mergekit(cfgs["union"]).tokenizer_source == "base"
    ends = from_mergekit(cfgs["ends_from_two_models"])
    assert (ends.embeddings_from, ends.head_from) == (0, 1)
    hops = from_mergekit(cfgs["scale_filtered"]).layers
    assert [h.tensor_scale for h in hops] == [None] * 3 + [{"o_proj": 0.0, "down_proj": 0.5, "*": 1.0},
                                                         {"o_proj": 0.0, "down_proj": 0.25, "*": 1.0}]


@pytest.mark.parametrize("name", ["ends_from_two_models", "scale_filtered"])
def test_layer_paths_write_back_as_passthrough_slices(tiny_family, name):
    r = from_mergekit(configs(tiny_family)[name])
    cfg = to_mergekit(r)
    assert cfg["merge_method"] == "passthrough" and from_mergekit(cfg) == r


def test_union_of_different_vocabularies_is_refused_naming_a_token(tiny_family, tmp_path):
    other = tmp_path / "e1_more_tokens"
    shutil.copytree(tiny_family["e1"], other)
    tok = json.loads((other / "tokenizer.json").read_text())
    tok["model"]["vocab"]["zebra"] = len(tok["model"]["vocab"])
    (other / "tokenizer.json").write_text(json.dumps(tok))
    cfg = {**configs(tiny_family)["union"], "models": [{"model": str(tiny_family["e0"])}, {"model": str(other)}]}
    with pytest.raises(ConfigError) as err:
        from_mergekit(cfg)
    msg = str(err.value)
    assert "\n" not in msg and "tokenizer_source: 'union'" in msg and "'zebra'" in msg


def test_no_dtype_over_models_stored_in_different_dtypes_is_refused(tiny_family, tmp_path):
    """mergekit would compute in the stored dtype; with two of them there is none to choose."""
    bf16 = build_family(tmp_path, n_experts=1, dtype=torch.bfloat16)
    cfg = {"merge_method": "task_arithmetic", "base_model": str(tiny_family["base"]),
           "models": [{"model": str(bf16["e0"]), "parameters": {"weight": 1.0}}]}
    with pytest.raises(ConfigError, match="dtype: not set and the models are stored in bfloat16, float32"):
        from_mergekit(cfg)
    assert from_mergekit({**cfg, "dtype": "bfloat16"}).compute_dtype == "bfloat16"


def test_remaining_shapes_are_refused_in_one_line(tiny_family):
    b, e0, e1 = (str(tiny_family[k]) for k in ("base", "e0", "e1"))
    models = [{"model": e0, "parameters": {"weight": 1.0}}]
    cases = [
        ({"merge_method": "linear", "modules": {"text_decoder": {"models": models}, "vision_tower": {"models": models}}},
         "modules: evomerge reads the single module of decoder-only models ('default'), got text_decoder, vision_tower"),
        ({"merge_method": "ties", "base_model": b, "models": models, "tokenizer": {"source": "base", "tokens": {"x": {}}}},
         "tokenizer.tokens: per-token embedding sources are not supported"),
        ({"merge_method": "passthrough", "slices": [{"sources": [{"model": e0, "layer_range": [0, 2]}],
                                                      "parameters": {"scale": 0.5}}]}, "scaling model.embed_tokens.weight"),
        ({"merge_method": "linear", "slices": [{"sources": [{"model": e0, "layer_range": [0, 2], "parameters": {"weight": 1.0}},
                                                            {"model": e1, "layer_range": [2, 4], "parameters": {"weight": 1.0}}]}]},
         "only aligned slices are supported"),
    ]
    for cfg, expected in cases:
        with pytest.raises(ConfigError) as err:
            from_mergekit(cfg)
        assert "\n" not in str(err.value) and expected in str(err.value), (expected, str(err.value))

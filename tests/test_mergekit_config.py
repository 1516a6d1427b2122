"""Reading mergekit configs (no oracle needed): round trips, refusals, the CLI."""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from evomerge.cli import app
from evomerge.errors import ConfigError
from evomerge.mergekit_config import from_mergekit, to_mergekit
from evomerge.mergekit_config import load_any_recipe
from evomerge.recipe import parse_recipe


def recipes(f):
    b, e0, e1 = str(f["base"]), str(f["e0"]), str(f["e1"])
    layered = {"attn": [0.2, 0.9, 1.4], "mlp": 0.8, "embed": 0.1, "head": [1.0], "default": 1.0}
    return [
        {"method": "ties", "base": b, "sources": [{"model": e0, "parameters": {"weight": layered, "density": 0.4}},
                                                  {"model": e1, "parameters": {"weight": 0.7, "density": [0.2, 0.6]}}],
         "parameters": {"lambda": 1.3, "normalize": False}, "dtype": "bfloat16", "tokenizer_source": 1},
        {"method": "dare_ties", "base": b, "sources": [{"model": e0, "parameters": {"weight": 1.1, "density": 0.6}}],
         "parameters": {"rescale": "l1"}, "dtype": "float32", "seed": 0},
        {"method": "linear", "sources": [{"model": e0, "parameters": {"weight": 2.0}},
                                         {"model": e1, "parameters": {"weight": {"mlp": 1.0, "default": 0.5}}}],
         "dtype": "float16"},
        {"method": "breadcrumbs_ties", "base": b, "sources": [{"model": e0, "parameters": {"weight": 1.0, "gamma": 0.02}}],
         "parameters": {"density": 0.9}, "dtype": "float32", "tokenizer_source": "base"},
        {"method": "slerp", "base": b, "sources": [{"model": e1}], "parameters": {"t": {"attn": [0.0, 1.0], "default": 0.4}},
         "dtype": "float32"},
        {"method": "della", "base": b, "sources": [{"model": e0, "parameters": {"weight": 0.5, "density": 0.6, "epsilon": 0.1}},
                                                   {"model": e1, "parameters": {"weight": 1.0}}],
         "parameters": {"rescale": "l1", "density": 0.7}, "compute_dtype": "bfloat16", "dtype": "bfloat16"},
        {"method": "nuslerp", "base": b, "sources": [{"model": e0, "parameters": {"weight": 1.0}},
                                                     {"model": e1, "parameters": {"weight": [0.2, 0.8]}}],
         "parameters": {"nuslerp_flatten": False}, "dtype": "float32"},
        {"method": "karcher", "sources": [{"model": e0}, {"model": e1}], "parameters": {"max_iter": 3}, "dtype": "float32"},
        {"method": "sce", "base": b, "sources": [{"model": e0}, {"model": e1}], "parameters": {"select_topk": 0.3},
         "compute_dtype": "float16", "dtype": "float32"},
        {"method": "nearswap", "base": b, "sources": [{"model": e1}], "parameters": {"t": 0.001}, "dtype": "float32"},
        {"method": "model_stock", "base": b, "sources": [{"model": e0}, {"model": e1}], "dtype": "float32"},
    ]


@pytest.mark.parametrize("i", range(11))
def test_recipe_to_mergekit_and_back_is_the_same_recipe(tiny_family, i):
    r = parse_recipe(recipes(tiny_family)[i])
    cfg = to_mergekit(r)
    back = from_mergekit(yaml.safe_load(yaml.safe_dump(cfg)))
    assert back == r, (cfg, back.to_dict())


def test_mergekit_config_file_is_detected_and_read(tiny_family, tmp_path):
    cfg = {"merge_method": "dare_ties", "base_model": str(tiny_family["base"]),
           "models": [{"model": str(tiny_family["e0"]), "parameters": {"weight": 0.5, "density": 0.7}}],
           "parameters": {"int8_mask": True}, "dtype": "bfloat16"}
    path = tmp_path / "mk.yaml"
    path.write_text(yaml.safe_dump(cfg))
    r = load_any_recipe(path)
    assert r.method == "dare_ties" and r.parameters == {"rescale": "l1"} and r.dtype == "bfloat16"
    assert load_any_recipe(path, format="mergekit") == r
    assert from_mergekit({**cfg, "dtype": "torch.bfloat16"}) == r  # mergekit's other spelling
    with pytest.raises(ConfigError, match="mk.yaml: .*: unknown field"):
        load_any_recipe(path, format="evomerge")


def test_unsupported_mergekit_features_are_refused_in_one_line(tiny_family, tmp_path):
    b, e0 = str(tiny_family["base"]), str(tiny_family["e0"])
    ok = {"merge_method": "ties", "base_model": b, "models": [{"model": e0, "parameters": {"weight": 1.0}}]}
    sl = lambda m, a, z, **kw: {"model": m, "layer_range": [a, z], **kw}  # noqa: E731
    cases = [
        ({**ok, "merge_method": "cabs"}, "merge_method: 'cabs' is not supported"),
        ({**ok, "merge_method": "model_stock"}, "sources: method model_stock takes at least 2 sources besides the base, got 1"),
        ({**ok, "merge_method": "nearswap", "models": [{"model": e0}, {"model": b}, {"model": e0 + "/../e1"}]},
         "sources: method nearswap takes exactly 1 source besides the base, got 2"),
        ({**ok, "merge_method": "nearswap", "models": [{"model": e0}]}, "parameters.t: required by method nearswap"),
        ({**ok, "merge_method": "della", "parameters": {"epsilon": 0.7}}, "parameters.epsilon: 0.7 is outside [0, 0.5]"),
        ({**ok, "merge_method": "della", "parameters": {"density": 0.1, "epsilon": 0.2}},
         "density 0.1 +/- epsilon 0.2 must lie inside (0, 1)"),
        ({**ok, "dtype": "bf16"}, "dtype: 'bf16' is not one of float32, bfloat16, float16"),
        ({**ok, "tokenizer": {"source": "union", "pad_to_multiple_of": 64}}, "tokenizer.pad_to_multiple_of: padding"),
        ({**ok, "chat_template": "chatml"}, "chat_template: this mergekit option is not supported"),
        ({**ok, "base_model": "mistralai/Mistral-7B-v0.1"}, "base_model: 'mistralai/Mistral-7B-v0.1' is not a local model directory"),
        ({**ok, "models": [{"model": e0 + "+some/lora"}]}, "LoRA references"),
        ({**ok, "tokenizer_source": "union", "tokenizer": {"source": "base"}}, "tokenizer: give either tokenizer_source"),
        ({**ok, "parameters": {"weight": [{"filter": "q_proj", "value": 1.0}]}}, "parameters.weight[0].filter: 'q_proj' matches only some tensors of the attn group"),
        ({**ok, "parameters": {"epsilon": 0.1}}, "parameters.epsilon: method ties has no parameter"),
        ({**ok, "parameters": {"density": 1.5}}, "parameters.density: 1.5 is outside [0, 1]"),
        ({**ok, "models": [{"model": e0, "lora": "x"}]}, "models[0].lora: not supported"),
        ({"merge_method": "ties", "base_model": b, "slices": [
            {"sources": [sl(b, 0, 2), sl(e0, 2, 4)]}]}, "only aligned slices are supported"),
        ({**ok, "parameters": {"weight": [{"filter": "input_layernorm", "value": 1.0}]}},
         "parameters.weight[0].filter: 'input_layernorm' matches only some tensors of the layernorm group"),
        ({**ok, "parameters": {"weight": [{"filter": "model.norm", "value": 1.0}]}},
         "parameters.weight: a filter sets the final norm but not the layers' norms, with no catch-all"),
        ({"merge_method": "passthrough", "slices": [{"sources": [sl(e0, 0, 2)], "parameters": {"weight": 0.5}}]},
         "slices[0].parameters.weight: passthrough takes only a scale"),
        ({"merge_method": "passthrough", "slices": [{"sources": [sl(e0, 0, 2)], "parameters": {
            "scale": [{"filter": "layers.1.", "value": 0.5}]}}]}, "filters on layer numbers are not supported"),
        ({**ok, "slices": [{"sources": [sl(b, 0, 4)]}]}, "give exactly one of 'models' or 'slices'"),
        ({"merge_method": "slerp", "base_model": b, "models": [{"model": b}, {"model": e0}]}, "parameters.t: required"),
    ]
    for cfg, expected in cases:
        with pytest.raises(ConfigError) as err:
            from_mergekit(cfg, tmp_path / "mk.yaml")
        msg = str(err.value)
        assert "\n" not in msg and expected in msg and msg.startswith(str(tmp_path / "mk.yaml")), (expected, msg)


def test_to_mergekit_refuses_what_mergekit_cannot_express(tiny_family):
    r = parse_recipe({"method": "dare_linear", "base": str(tiny_family["base"]),
                      "sources": [{"model": str(tiny_family["e0"])}]})
    with pytest.raises(ConfigError, match="parameters.rescale: 'inverse_density'"):
        to_mergekit(r)
    flow = parse_recipe({"kind": "dataflow", "sources": [{"model": "x"}], "layers": [{"source": 0, "layer": 0, "scale": 0.8}]})
    with pytest.raises(ConfigError, match=r"layers\[0\].scale: hidden-state scales"):
        to_mergekit(flow)
    flow = parse_recipe({"kind": "dataflow", "sources": [{"model": "x"}, {"model": "y"}],
                         "layers": [{"source": 1, "layer": 0}, {"source": 0, "layer": 1}]})
    with pytest.raises(ConfigError, match="embeddings_from: mergekit takes the embeddings from the first layer's model"):
        to_mergekit(flow)


def test_cli_refuses_an_unsupported_mergekit_config_and_writes_nothing(tiny_family, tmp_path):
    path = tmp_path / "mk.yaml"
    path.write_text(yaml.safe_dump({"merge_method": "cabs", "base_model": str(tiny_family["base"]),
                                    "models": [{"model": str(tiny_family["e0"])}]}))
    res = CliRunner().invoke(app, ["merge", str(path), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and not (tmp_path / "o").exists()
    assert res.output.strip().count("\n") == 0 and "merge_method: 'cabs' is not supported" in res.output
    ok = tmp_path / "ok.yaml"
    ok.write_text(yaml.safe_dump({"merge_method": "task_arithmetic", "base_model": str(tiny_family["base"]),
                                  "models": [{"model": str(tiny_family["e0"]), "parameters": {"weight": 0.5}}]}))
    res = CliRunner().invoke(app, ["merge", str(ok), "--out", str(tmp_path / "o")])
    assert res.exit_code == 0 and (tmp_path / "o" / "model.safetensors").exists(), res.output

"""Recipe YAML: validation gives one line naming the field; values per group and depth."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from evomerge.errors import ConfigError
from evomerge.mergekit_config import load_any_recipe
from evomerge.ops.layered import depth_position, evaluate, interpolate, tensor_group
from evomerge.recipe import load_recipe, parse_recipe

GOOD = {
    "method": "ties", "base": "zoo:base",
    "sources": [{"model": "zoo:math", "parameters": {"weight": {"attn": [0.5, 1.5], "default": 1.0},
                                                      "density": 0.5}},
                {"model": "experts/words", "parameters": {"weight": 0.8}}],
    "parameters": {"lambda": 1.0, "density": 0.7}, "dtype": "bfloat16", "seed": 3,
}


def write(tmp_path: Path, data, name="r.yaml") -> Path:
    p = tmp_path / name
    p.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return p


def test_round_trip_and_relative_paths(tmp_path):
    r = load_recipe(write(tmp_path, GOOD))
    assert r.sources[1].model == str(tmp_path / "experts/words")  # resolved against the YAML folder
    assert r.sources[0].model == "zoo:math" and r.base == "zoo:base"
    again = load_recipe(write(tmp_path, r.to_yaml(), "again.yaml"))
    assert again == r and again.to_dict() == r.to_dict()


@pytest.mark.parametrize("patch, expected", [
    ({"method": "tie"}, "method: unknown method 'tie'"),
    ({"base": None}, "base: method ties needs a base model"),
    ({"dtype": "int4"}, "dtype: 'int4' is not one of"),
    ({"sources": [{"model": "a", "parameters": {"density": 1.5}}]}, "sources[0].parameters.density: 1.5 is outside [0, 1]"),
    ({"sources": [{"model": "a", "parameters": {"density": [0.2, -0.1]}}]}, "sources[0].parameters.density[1]: -0.1 is outside"),
    ({"sources": [{"model": "a", "parameters": {"weight": {"atn": 1}}}]}, "sources[0].parameters.weight.atn: unknown layer group"),
    ({"sources": [{"model": "a", "parameters": {"epsilon": 1}}]}, "sources[0].parameters.epsilon: method ties has no parameter"),
    ({"sources": [{"model": "a", "parameters": {"lambda": 2}}]}, "'lambda' is a global parameter"),
    ({"sources": [{"modle": "a"}]}, "sources[0].modle: unknown field"),
    ({"sources": []}, "sources: at least one source"),
    ({"parameters": {"normalize": "yes"}}, "parameters.normalize: 'yes' is not true/false"),
    ({"parameters": {"rescale": "l3"}}, "parameters.rescale: 'l3' is not one of"),
    ({"tokenizer_source": 5}, "tokenizer_source: index 5 but there are 2 sources"),
    ({"seed": "x"}, "seed:"),
    ({"method": "slerp", "parameters": {"t": 0.5}}, "method slerp takes exactly 2 models (a base counts as one), got 3"),
    ({"method": "slerp", "base": None, "sources": [{"model": "a"}, {"model": "b"}], "parameters": {}},
     "parameters.t: required"),
])
def test_bad_recipes_give_one_line_naming_the_field(tmp_path, patch, expected):
    path = write(tmp_path, {**GOOD, **patch})
    with pytest.raises(ConfigError) as err:
        load_recipe(path)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(str(path)) and expected in msg, msg


def test_malformed_and_missing_files(tmp_path):
    with pytest.raises(ConfigError, match=r"r.yaml: malformed YAML \(line 2\)"):
        load_recipe(write(tmp_path, "method: ties\n  base: [oops\n"))
    with pytest.raises(ConfigError, match="nope.yaml: cannot read"):
        load_recipe(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_recipe(write(tmp_path, "- 1\n- 2\n"))
    with pytest.raises(ConfigError, match="kind: 'graph'"):
        load_recipe(write(tmp_path, {"kind": "graph"}))
    with pytest.raises(ConfigError, match="--format"):
        load_any_recipe(write(tmp_path, GOOD), format="json")


def test_dataflow_recipe_with_inline_parameter_source(tmp_path):
    data = {"kind": "dataflow", "sources": [{"model": "zoo:math"}, {"recipe": {**GOOD}}],
            "embeddings_from": 0, "layers": [{"source": 0, "layer": 0}, {"source": 1, "layer": 3, "scale": 0.8}]}
    r = load_recipe(write(tmp_path, data))
    assert r.kind == "dataflow" and r.sources[1].recipe.method == "ties" and r.layers[1].scale == 0.8
    assert parse_recipe(r.to_dict()) == r
    bad = {**data, "layers": [{"source": 2, "layer": 0}]}
    with pytest.raises(ConfigError, match="layers\\[0\\].source: 2 but there are 2 sources"):
        load_recipe(write(tmp_path, bad))
    with pytest.raises(ConfigError, match="exactly one of 'model' or 'recipe'"):
        load_recipe(write(tmp_path, {**data, "sources": [{}]}))


def test_groups_gradients_and_depth():
    assert tensor_group("model.layers.3.self_attn.q_proj.weight") == "attn"
    assert tensor_group("model.layers.3.mlp.down_proj.weight") == "mlp"
    assert tensor_group("model.layers.3.input_layernorm.weight") == "layernorm"  # a norm inside the blocks
    assert tensor_group("model.norm.weight") == "norm"
    assert evaluate({"norm": 2.0}, "layernorm", 0.0) == 2.0  # layernorm falls back to norm, then default
    assert evaluate({"layernorm": 3.0, "default": 1.0}, "norm", 0.0) == 1.0
    assert tensor_group("model.embed_tokens.weight") == "embed"
    assert tensor_group("lm_head.weight") == "head"
    assert depth_position("model.layers.0.mlp.up_proj.weight", 4) == 0.0
    assert depth_position("model.layers.3.mlp.up_proj.weight", 4) == 1.0
    assert depth_position("model.norm.weight", 4) == 0.0  # outside the blocks: first value
    assert interpolate([0.0, 1.0, 3.0], 0.75) == 2.0
    assert evaluate([1.0, 2.0, 3.0, 4.0], "mlp", 2 / 3) == pytest.approx(3.0)  # a list of L values is per block
    v = {"attn": [0.0, 1.0], "default": 5.0}
    assert evaluate(v, "attn", 0.5) == 0.5 and evaluate(v, "mlp", 0.5) == 5.0
    assert evaluate({"mlp": 1.0}, "attn", 0.0) is None  # falls back to the next scope

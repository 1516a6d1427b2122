"""Data-flow materialization: identity start, scale folding vs. explicit hidden-state scaling,
export as a real HF checkpoint with the evolved depth, hybrid (inline parameter recipe) sources."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evomerge.genome import Models
from evomerge.genome.dataflow import DataflowSpace, DataflowSpec
from evomerge.recipe import parse_recipe

# Folding is exact up to RMSNorm's epsilon. With the norms' epsilon at ~0 the folded and the
# explicitly scaled model agree to float32 rounding (measured 3e-7 max |diff| of logits of size
# ~0.7); with the checkpoints' own epsilon (1e-6) against hidden states of RMS ~0.02 (random
# tiny models) the relative difference is 2.6e-4. A wrong fold (not cumulative, or q/k/v instead
# of o/down projections) is off by 1e-1 or more.
EXACT_ATOL = 1e-5
EPS_RTOL = 1e-3
IDS = torch.tensor([[5, 17, 42, 8, 63, 21, 9, 77, 30, 12]])


def logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=IDS).logits


def hf(path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def dfs_recipe(family, hops, sources=("e0", "e1")):
    return parse_recipe({"kind": "dataflow", "sources": [{"model": str(family[s])} for s in sources],
                         "layers": [{"source": s, "layer": l, "scale": c} for s, l, c in hops]})


def test_start_point_reproduces_model_a_exactly(tiny_family):
    from evomerge.engine.dataflow import build_model

    space = DataflowSpace.from_spec(DataflowSpec(repetitions=2), Models(sources=(str(tiny_family["e0"]),
                                                                                   str(tiny_family["e1"]))))
    recipe = space.to_recipe(space.x0)
    assert [(h.source, h.layer, h.scale) for h in recipe.layers] == [(0, i, 1.0) for i in range(4)]
    assert torch.equal(logits(build_model(recipe)), logits(hf(tiny_family["e0"])))


def _explicitly_scaled(family, hops):
    """The same path with unit scales, multiplying each hop's input hidden state by its scale."""
    from evomerge.engine.dataflow import build_model

    plain = build_model(dfs_recipe(family, [(s, l, 1.0) for s, l, _ in hops]))

    def scaler(s):
        def hook(module, args, kwargs):
            if args:
                return (args[0] * s, *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": kwargs["hidden_states"] * s}
        return hook

    for layer, (_, _, s) in zip(plain.model.layers, hops):
        layer.register_forward_pre_hook(scaler(s), with_kwargs=True)
    return plain


def _set_eps(model, eps):
    for m in model.modules():
        if hasattr(m, "variance_epsilon"):
            m.variance_epsilon = eps


HOPS = [(0, 0, 1.7), (1, 1, 0.4), (1, 2, 1.3), (0, 1, 0.6), (0, 3, 2.0), (1, 3, 0.9)]


def test_scales_fold_into_output_projections_exactly_without_epsilon(tiny_family):
    from evomerge.engine.dataflow import build_model

    folded, explicit = build_model(dfs_recipe(tiny_family, HOPS)), _explicitly_scaled(tiny_family, HOPS)
    _set_eps(folded, 1e-30)
    _set_eps(explicit, 1e-30)
    assert (logits(explicit) - logits(folded)).abs().max().item() < EXACT_ATOL


def test_scale_folding_error_from_the_norm_epsilon_is_small(tiny_family):
    from evomerge.engine.dataflow import build_model

    got = logits(build_model(dfs_recipe(tiny_family, HOPS)))
    want = logits(_explicitly_scaled(tiny_family, HOPS))
    assert ((want - got).norm() / want.norm()).item() < EPS_RTOL
    # and the scales matter: without them it is a different model
    unscaled = logits(build_model(dfs_recipe(tiny_family, [(s, l, 1.0) for s, l, _ in HOPS])))
    assert ((unscaled - got).norm() / got.norm()).item() > 100 * EPS_RTOL


def test_export_is_a_real_checkpoint_with_the_evolved_depth(tiny_family, tmp_path):
    from transformers import AutoTokenizer

    from evomerge.engine import merge_to_disk
    from evomerge.engine.dataflow import build_model

    recipe = dfs_recipe(tiny_family, [(0, 0, 1.0), (1, 1, 0.5), (0, 1, 1.5), (1, 1, 0.8), (0, 2, 1.0),
                                      (1, 3, 1.2), (0, 3, 1.0)])
    out = merge_to_disk(recipe, tmp_path / "dfs")
    model = hf(out)
    assert model.config.num_hidden_layers == 7 and len(model.model.layers) == 7
    assert torch.allclose(logits(model), logits(build_model(recipe)), atol=1e-6)
    assert AutoTokenizer.from_pretrained(out)("w1 w2")["input_ids"]
    assert (out / "evomerge_recipe.yaml").exists()


def test_hybrid_source_is_merged_first(tiny_family, tmp_path):
    from evomerge.engine import merge_to_disk
    from evomerge.engine.dataflow import build_model

    ps = {"kind": "parameter", "method": "ties", "base": str(tiny_family["base"]),
          "sources": [{"model": str(tiny_family["e0"]), "parameters": {"weight": 1.2, "density": 0.6}},
                      {"model": str(tiny_family["e1"]), "parameters": {"weight": 0.7, "density": 0.4}}]}
    merged = merge_to_disk(parse_recipe(ps), tmp_path / "ps")
    hops = [{"source": 0, "layer": 0, "scale": 1.0}, {"source": 1, "layer": 1, "scale": 0.7},
            {"source": 0, "layer": 2, "scale": 1.1}, {"source": 0, "layer": 3, "scale": 1.0}]
    inline = parse_recipe({"kind": "dataflow", "sources": [{"recipe": ps}, {"model": str(tiny_family["e1"])}],
                           "layers": hops})
    on_disk = parse_recipe({"kind": "dataflow", "sources": [{"model": str(merged)}, {"model": str(tiny_family["e1"])}],
                            "layers": hops})
    assert torch.allclose(logits(build_model(inline)), logits(build_model(on_disk)), atol=1e-6)


def test_mismatched_sources_are_refused(tiny_family, tmp_path):
    from helpers_engine import random_state, save_model

    from evomerge.engine.dataflow import build_model
    from evomerge.errors import CheckpointError

    deeper = save_model(random_state(3, layers=2), tmp_path / "two", layers=2)
    r = parse_recipe({"kind": "dataflow", "sources": [{"model": str(tiny_family["e0"])}, {"model": str(deeper)}],
                      "layers": [{"source": 1, "layer": 3}]})
    with pytest.raises(CheckpointError, match="layers\\[0\\]: source 1 has no layer 3"):
        build_model(r)


def test_resident_sources_give_the_same_model(tiny_family):
    from evomerge.engine import ResidentSources
    from evomerge.engine.dataflow import build_model

    recipe = dfs_recipe(tiny_family, [(1, 0, 1.0), (0, 1, 0.5), (1, 3, 1.4)])
    resident = ResidentSources.load([str(tiny_family["e0"]), str(tiny_family["e1"])])
    assert np.allclose(logits(build_model(recipe, resident)).numpy(), logits(build_model(recipe)).numpy(), atol=0)


def test_export_honours_the_shard_size(tiny_family, tmp_path):
    import json

    from evomerge.engine import merge_to_disk

    recipe = dfs_recipe(tiny_family, [(0, 0, 1.0), (1, 1, 0.5), (0, 2, 1.0), (0, 3, 1.0)])
    whole = merge_to_disk(recipe, tmp_path / "one")
    small = merge_to_disk(recipe, tmp_path / "many", max_shard_bytes=20_000)
    assert len(list(whole.glob("*.safetensors"))) == 1
    shards = sorted(small.glob("*.safetensors"))
    index = json.loads((small / "model.safetensors.index.json").read_text())
    assert len(shards) > 2 and set(index["weight_map"].values()) == {p.name for p in shards}
    assert torch.allclose(logits(hf(small)), logits(hf(whole)), atol=0)

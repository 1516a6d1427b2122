"""Search spaces: bounds, start points and genome <-> recipe round trips for every kind."""

from __future__ import annotations

import numpy as np
import pytest

from evomerge.errors import ConfigError
from evomerge.genome import Models, load_space


@pytest.fixture(scope="module")
def models(tiny_family):
    return Models(sources=(str(tiny_family["e0"]), str(tiny_family["e1"])), base=str(tiny_family["base"]))


def _random_inside(space, seed):
    return np.random.default_rng(seed).uniform(space.lower, space.upper)


@pytest.mark.parametrize("groups,genes_per", [("model", 1), ("blocks", 6), ("attn_mlp", 10), ("gradient", 3)])
def test_parameter_space_round_trips(models, groups, genes_per):
    space = load_space({"kind": "parameter", "method": "dare_ties", "groups": groups,
                        "weight": {"low": 0.0, "high": 3.0, "init": 1.0}}, models)
    assert space.dim == 2 * 2 * genes_per          # 2 sources x (weight, density) x genes
    for seed in range(5):
        x = _random_inside(space, seed)
        recipe = space.to_recipe(x)
        assert recipe.method == "dare_ties" and recipe.base == models.base
        assert np.array_equal(space.from_recipe(recipe), x)
        assert np.array_equal(space.from_recipe(recipe.to_dict()), x)


def test_parameter_weights_are_not_forced_to_sum_to_one(models):
    space = load_space({"kind": "parameter", "method": "ties", "weight": {"low": 0.0, "high": 2.0}}, models)
    recipe = space.to_recipe(space.upper)
    assert sum(s.parameters["weight"] for s in recipe.sources) == pytest.approx(4.0)
    assert recipe.parameters.get("normalize") is None   # the method's own default, untouched


def test_blocks_layout_writes_one_value_per_block(models):
    space = load_space({"kind": "parameter", "method": "ties", "groups": "blocks"}, models)
    x = np.arange(space.dim, dtype=float) / space.dim
    w = space.to_recipe(x).sources[0].parameters["weight"]
    assert set(w) == {"embed", "default", "head"} and len(w["default"]) == 4


def test_gradient_layout_is_a_three_point_gradient_over_depth(models):
    from evomerge.recipe import evaluate

    space = load_space({"kind": "parameter", "method": "task_arithmetic", "groups": "gradient",
                        "weight": {"low": 0.0, "high": 3.0}}, models)
    assert space.dim == 2 * 3 and space.gene_labels()[0].endswith("_depth0")
    w = space.to_recipe([0.5, 1.0, 2.5, 0.0, 0.0, 0.0]).sources[0].parameters["weight"]
    assert w == [0.5, 1.0, 2.5]
    assert evaluate(w, "mlp", 0.0) == 0.5 and evaluate(w, "mlp", 1.0) == 2.5   # first and last block
    plain = space.to_recipe(space.x0).to_dict()
    plain["sources"][0]["parameters"]["weight"] = 0.75                         # a plain merge's weight
    assert list(space.from_recipe(plain)[:3]) == [0.75] * 3


def test_task_vector_space_is_one_coefficient_per_expert(models):
    space = load_space({"kind": "task_vector", "coefficient": {"low": 0.0, "high": 1.5}}, models)
    assert space.dim == 2
    r = space.to_recipe([0.25, 1.25])
    assert r.method == "task_arithmetic" and [s.parameters["weight"] for s in r.sources] == [0.25, 1.25]
    assert np.array_equal(space.from_recipe(r), [0.25, 1.25])


def test_dataflow_space_layout_and_round_trip(models):
    space = load_space({"kind": "dataflow", "repetitions": 3}, models)
    T = 3 * (4 + 4)
    assert space.dim == T + 4
    start = space.to_recipe(space.x0)
    assert [(h.source, h.layer, h.scale) for h in start.layers] == [(0, i, 1.0) for i in range(4)]
    for seed in range(5):
        x = _random_inside(space, seed)
        recipe = space.to_recipe(x)
        back = space.from_recipe(recipe)
        assert space.to_recipe(back) == recipe
        assert np.array_equal(back[:T] > 0, x[:T] > 0)
    # crossing scales: hop from model 0 into model 1 uses W[0][1]
    x = space.x0.copy()
    x[4] = 0.5                     # repetition 0, model 1, layer 0 on
    x[T + 1] = 0.3                 # W[0][1]
    hops = space.to_recipe(x).layers
    assert [(h.source, h.layer, h.scale) for h in hops] == [(0, 0, 1.0), (0, 1, 1.0), (0, 2, 1.0), (0, 3, 1.0),
                                                            (1, 0, 0.3)]


def test_dataflow_empty_path_is_an_error(models):
    space = load_space({"kind": "dataflow", "repetitions": 1}, models)
    with pytest.raises(ConfigError, match="empty path"):
        space.to_recipe(space.lower)


def test_hybrid_space_puts_the_merge_first(models):
    space = load_space({"kind": "hybrid", "parameter": {"kind": "parameter", "method": "ties"},
                        "dataflow": {"repetitions": 1}}, models)
    ps_dim = 4
    assert space.dim == ps_dim + 3 * 4 + 9
    r = space.to_recipe(space.x0)
    assert r.sources[0].recipe.method == "ties" and [h.source for h in r.layers] == [0, 0, 0, 0]
    x = _random_inside(space, 3)
    x[ps_dim] = 1.0                # at least one slot on
    recipe = space.to_recipe(x)
    back = space.from_recipe(recipe)
    assert np.array_equal(back[:ps_dim], x[:ps_dim]) and space.to_recipe(back) == recipe


@pytest.mark.parametrize("spec,match", [
    ({"kind": "parameter", "method": "nope"}, "not a weighted merge method"),
    ({"kind": "parameter", "density": {"low": 0.1, "high": 1.5}}, "density"),
    ({"kind": "parameter", "weight": {"low": 2.0, "high": 1.0}}, "weight: low"),
    ({"kind": "parameter", "wieght": {"low": 0, "high": 1}}, "wieght: unknown field"),
    ({"kind": "dataflow", "scale": {"low": 0.0, "high": 2.0}}, "scale: low must be > 0"),
    ({"kind": "teleport"}, "kind"),
])
def test_bad_specs_fail_with_one_line(models, spec, match):
    with pytest.raises(ConfigError, match=match) as err:
        load_space(spec, models)
    assert "\n" not in str(err.value)


def test_weights_space_is_the_flat_net(models):
    space = load_space({"kind": "weights", "hidden": 10, "bound": 2.0}, models)
    assert space.dim == 64 * 10 + 10 + 10 * 10 + 10
    x = _random_inside(space, 0)
    r = space.to_recipe(x)
    assert r["kind"] == "weights" and np.array_equal(space.from_recipe(r), x)
    with pytest.raises(ConfigError, match="not a digits_mlp"):
        space.from_recipe({**r, "hidden": 11})

"""Search spaces: bounds, start points and genome <-> recipe round trips for every kind."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pytest
import yaml
from pydantic import Field

from evomerge.config_io import StrictModel
from evomerge.errors import ConfigError
from evomerge.genome import SPACES, Models, Range, SearchSpace, load_space
from evomerge.recipe import parse_recipe


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
    from evomerge.ops.layered import evaluate

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


def test_dataflow_head_can_come_from_another_source(models):
    space = load_space({"kind": "dataflow", "repetitions": 1, "head_from": 1}, models)
    x = space.x0.copy()
    x[3], x[7] = -0.5, 0.5         # model 0's layers 0-2, then model 1's layer 3
    recipe = space.to_recipe(x)
    assert recipe.embeddings_from == 0 and recipe.head_from == 1
    assert [(h.source, h.layer) for h in recipe.layers] == [(0, 0), (0, 1), (0, 2), (1, 3)]
    assert np.array_equal(space.from_recipe(recipe), space.clip(x))
    other = load_space({"kind": "dataflow", "repetitions": 1}, models)
    with pytest.raises(ConfigError, match="head_from differ"):
        other.from_recipe(recipe)
    with pytest.raises(ConfigError, match="head_from: 2 but there are 2 sources"):
        load_space({"kind": "dataflow", "head_from": 2}, models)


def test_hybrid_can_take_embeddings_head_and_start_from_the_original_models(models):
    hybrid = load_space({"kind": "hybrid", "parameter": {"kind": "parameter", "method": "ties"},
                         "dataflow": {"repetitions": 1, "embeddings_from": 1, "head_from": 2}}, models)
    r = hybrid.to_recipe(hybrid.x0)
    assert (r.embeddings_from, r.head_from) == (1, 2) and r.sources[0].recipe.method == "ties"
    assert [(h.source, h.layer) for h in r.layers] == [(1, i) for i in range(4)]
    assert np.array_equal(hybrid.from_recipe(r), hybrid.x0)


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


def test_hybrid_space_with_a_fixed_merge_file_is_stored_self_contained(models, tmp_path):
    from evomerge.experiment import load_experiment

    sub = tmp_path / "spaces"
    sub.mkdir()
    (sub / "merge.yaml").write_text(yaml.safe_dump({"method": "linear", "sources": [{"model": m} for m in models.sources]}))
    (sub / "space.yaml").write_text("kind: hybrid\nparameter: merge.yaml\ndataflow: {repetitions: 1}\n")
    (tmp_path / "exp.yaml").write_text("name: h\nsearch_space: spaces/space.yaml\nfitness: {tasks: [math]}\n"
                                       "searcher: {name: random}\nbudget: 1\n")
    exp = load_experiment(tmp_path / "exp.yaml")
    assert exp.search_space["parameter"] == str((sub / "merge.yaml").resolve())   # absolute: the run needs no other file
    space = load_space(exp.search_space, models)
    assert space.dim == 3 * 4 + 9 and space.to_recipe(space.x0).sources[0].recipe.method == "linear"


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


class MixSpec(StrictModel):
    kind: Literal["mix"] = "mix"
    t: Range = Field(default_factory=lambda: Range(low=0.0, high=1.0, init=0.5))


class MixSpace(SearchSpace):
    """A kind defined outside evomerge: one gene t, the linear merge (1 - t) A + t B."""

    kind = "mix"
    Spec = MixSpec

    def __init__(self, spec: MixSpec, models: Models) -> None:
        self.models = models
        self._lo, self._hi, self._x0 = np.array([spec.t.low]), np.array([spec.t.high]), np.array([spec.t.start(0.5)])

    def to_recipe(self, x):
        t = float(self.clip(x)[0])
        a, b = self.models.sources
        return parse_recipe({"method": "linear", "sources": [{"model": a, "parameters": {"weight": 1 - t}},
                                                             {"model": b, "parameters": {"weight": t}}]})

    def from_recipe(self, recipe):
        return self.clip([recipe.sources[1].parameters["weight"]])


def test_a_new_kind_is_one_class_plus_one_registry_line(tmp_path, monkeypatch):
    monkeypatch.setitem(SPACES, MixSpace.kind, f"{__name__}:MixSpace")   # the one line
    (tmp_path / "mix.yaml").write_text("kind: mix\nt: {low: 0.2, high: 0.8, init: 0.3}\n")
    space = load_space(tmp_path / "mix.yaml", Models(sources=("zoo:a", "zoo:b")))
    assert isinstance(space, MixSpace) and space.x0.tolist() == [0.3] and space.dim == 1
    recipe = space.to_recipe([0.9])                                # clipped into the box
    assert [s.parameters["weight"] for s in recipe.sources] == pytest.approx([0.2, 0.8])
    assert space.from_recipe(recipe).tolist() == pytest.approx([0.8])
    (tmp_path / "typo.yaml").write_text("kind: mix\nstep: 1\n")
    with pytest.raises(ConfigError, match=r"typo.yaml: step: unknown field"):
        load_space(tmp_path / "typo.yaml", Models(sources=("zoo:a", "zoo:b")))
    with pytest.raises(ConfigError, match=r"models.sources: at least one"):
        load_space(tmp_path / "mix.yaml", Models(sources=()))
    monkeypatch.delitem(SPACES, MixSpace.kind)
    with pytest.raises(ConfigError, match=r"mix.yaml: kind: 'mix' is not one of parameter, task_vector"):
        load_space(tmp_path / "mix.yaml", Models(sources=("zoo:a", "zoo:b")))


def test_weights_space_offers_independent_seeded_inits(models):
    space = load_space({"kind": "weights", "initial_points": 3, "init_seed": 5}, models)
    again = load_space({"kind": "weights", "initial_points": 3, "init_seed": 5}, models)
    points = [space.x0, *space.initial]
    assert len(points) == 4 and all(np.array_equal(p, q) for p, q in zip(space.initial, again.initial))
    assert len({p.tobytes() for p in points}) == 4
    assert load_space({"kind": "parameter", "method": "ties"}, models).initial == ()

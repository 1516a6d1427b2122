"""The new weighted methods plug into the parameter search space: weight (and density where
the method sparsifies) become genes, their other parameters stay fixed in `parameters`."""

from __future__ import annotations

import numpy as np
import pytest

from evomerge.engine import merge_to_disk
from evomerge.genome import Models, load_space
from helpers_engine import load_tensors


@pytest.mark.parametrize("method,fixed,genes", [("della", {"epsilon": 0.1}, 2), ("della_linear", {}, 2),
                                                ("nuslerp", {"nuslerp_flatten": False}, 1),
                                                ("multislerp", {}, 1)])
def test_new_methods_are_searchable(tiny_family, tmp_path, method, fixed, genes):
    models = Models(sources=(str(tiny_family["e0"]), str(tiny_family["e1"])), base=str(tiny_family["base"]))
    space = load_space({"kind": "parameter", "method": method, "parameters": fixed,
                        "weight": {"low": 0.1, "high": 2.0, "init": 1.0}}, models)
    assert space.dim == 2 * genes
    x = np.random.default_rng(0).uniform(space.lower, space.upper)
    recipe = space.to_recipe(x)
    assert recipe.method == method and np.array_equal(space.from_recipe(recipe), x)
    merged = load_tensors(merge_to_disk(recipe, tmp_path / method))
    assert all(t.isfinite().all() for t in merged.values())

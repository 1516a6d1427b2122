"""Hybrid genomes: a parameter-space merge first, then a data-flow path that uses that merge
as source 0 next to the original models (evo-merge's PS+DFS).

The merge is either fixed (``parameter: path/to/recipe.yaml``, e.g. a finished PS run's
winner) or searched jointly (``parameter: {kind: parameter, ...}``: its genes come first).
The path's sources are [merge, original models...]; by default it takes the merge's embeddings
and head and starts through the merge's own layers, so it reproduces the merge.
``dataflow.embeddings_from`` (whose layers the path starts on) and ``head_from`` may name an
original model instead (1 = the first), e.g. to start where data-flow search alone starts and
use the merge's layers only where they help.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Union

import numpy as np
from pydantic import Field

from evomerge.config_io import StrictModel
from evomerge.errors import ConfigError
from evomerge.genome.base import Models, SearchSpace, model_layers
from evomerge.genome.dataflow import DataflowSpace, DataflowSpec
from evomerge.genome.parameter import ParameterSpace, ParameterSpec
from evomerge.recipe import load_recipe, parse_recipe


class HybridSpec(StrictModel):
    kind: Literal["hybrid"] = "hybrid"
    parameter: Union[ParameterSpec, str]
    dataflow: DataflowSpec = Field(default_factory=DataflowSpec)


class HybridSpace(SearchSpace):
    kind = "hybrid"
    Spec = HybridSpec

    @classmethod
    def from_spec(cls, spec: HybridSpec, models: Models, folder: Path | None = None) -> HybridSpace:
        models.require_sources()
        return cls(spec, models, folder)

    @classmethod
    def inline_paths(cls, spec: dict[str, Any], folder: Path) -> dict[str, Any]:
        """A fixed merge's recipe path made absolute."""
        if not isinstance(spec.get("parameter"), str):
            return spec
        return {**spec, "parameter": str((folder / Path(spec["parameter"]).expanduser()).resolve())}

    def __init__(self, spec: HybridSpec, models: Models, folder: Path | None = None) -> None:
        self.ps: ParameterSpace | None = None
        self.fixed: dict[str, Any] | None = None
        if isinstance(spec.parameter, str):
            path = Path(spec.parameter)
            recipe = load_recipe(path if path.is_absolute() or folder is None else folder / path)
            if recipe.kind != "parameter":
                raise ConfigError(f"search_space.parameter: {spec.parameter} is not a parameter recipe")
            self.fixed = recipe.to_dict()
            merged = self.fixed
        else:
            self.ps = ParameterSpace(spec.parameter, models)
            merged = self.ps.recipe_dict(self.ps.x0)
        self.n_ps = 0 if self.ps is None else self.ps.dim
        layers = [model_layers(models.sources[0])] + [model_layers(m) for m in models.sources]
        sources = [{"recipe": merged}] + [{"model": m} for m in models.sources]
        self.dfs = DataflowSpace(spec.dataflow, sources, layers)
        ps_lo = self.ps.lower if self.ps else np.zeros(0)
        ps_hi = self.ps.upper if self.ps else np.zeros(0)
        ps_x0 = self.ps.x0 if self.ps else np.zeros(0)
        self._lo = np.concatenate([ps_lo, self.dfs.lower])
        self._hi = np.concatenate([ps_hi, self.dfs.upper])
        self._x0 = np.concatenate([ps_x0, self.dfs.x0])

    def gene_labels(self) -> list[str]:
        return (self.ps.gene_labels() if self.ps is not None else []) + self.dfs.gene_labels()

    def to_recipe(self, x: np.ndarray) -> Any:
        x = self.clip(x)
        data = self.dfs.recipe_dict(x[self.n_ps:])
        if self.ps is not None:
            data["sources"][0] = {"recipe": self.ps.recipe_dict(x[:self.n_ps])}
        return parse_recipe(data, "search_space")

    def from_recipe(self, recipe: Any) -> np.ndarray:
        r = parse_recipe(recipe, "recipe") if isinstance(recipe, dict) else recipe
        if getattr(r, "kind", None) != "dataflow" or r.sources[0].recipe is None:
            raise ConfigError("recipe: a hybrid genome needs a dataflow recipe whose source 0 is a parameter recipe")
        ps_genes = self.ps.from_recipe(r.sources[0].recipe) if self.ps is not None else np.zeros(0)
        d = r.to_dict()
        d["sources"][0] = self.dfs.sources[0]
        return np.concatenate([ps_genes, self.dfs.from_recipe(d)])

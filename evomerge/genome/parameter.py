"""Parameter-space genomes: a weight and a density per source, optionally per layer group.

Evo-merge's PS search (TIES + DARE) evolved one density and one weight per source model and let
weights sum to about 2, so bounds here never force weights to sum to 1. ``groups`` picks the
granularity: ``model`` (one gene per source), ``blocks`` (embeddings, each block, head),
``attn_mlp`` (embeddings, attention and MLP of each block, head) or ``gradient`` (3 genes per
source: a mergekit gradient read at the first, middle and last block — few genes for deep models;
embeddings, final norm and head read the first value). The task-vector space is MAP's plain
coefficient per expert.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator

from evomerge.config_io import StrictModel
from evomerge.errors import ConfigError
from evomerge.genome.base import Models, Range, SearchSpace, model_layers, short_names
from evomerge.ops import METHODS
from evomerge.ops.layered import depth_position, evaluate, tensor_group
from evomerge.recipe import parse_recipe

Layout = Literal["model", "blocks", "attn_mlp", "gradient"]
GRADIENT_POINTS = 3


class ParameterSpec(StrictModel):
    kind: Literal["parameter"] = "parameter"
    method: str = "dare_ties"
    groups: Layout = "model"
    weight: Range = Field(default_factory=lambda: Range(low=0.0, high=2.0, init=1.0))
    density: Range = Field(default_factory=lambda: Range(low=0.1, high=1.0, init=0.5))
    parameters: dict[str, Any] = Field(default_factory=dict)   # fixed global parameters
    dtype: str | None = None
    seed: int = 0

    @field_validator("density")
    @classmethod
    def _density(cls, v: Range) -> Range:
        if v.low < 0.0 or v.high > 1.0:
            raise ValueError(f"density bounds [{v.low}, {v.high}] must lie within [0, 1]")
        return v


class TaskVectorSpec(StrictModel):
    kind: Literal["task_vector"] = "task_vector"
    coefficient: Range = Field(default_factory=lambda: Range(low=0.0, high=1.0, init=0.5))
    dtype: str | None = None
    seed: int = 0


def _names(layout: Layout, n_layers: int) -> list[tuple[str, str]]:
    """(group label, synthetic tensor name) per gene of one source parameter."""
    if layout == "model":
        return [("all", "model.layers.0.mlp.down_proj.weight")]
    if layout == "gradient":  # the layers where each point of the gradient is read exactly (or nearest)
        last = n_layers - 1
        return [(f"depth{k}", f"model.layers.{round(k * last / (GRADIENT_POINTS - 1))}.mlp.down_proj.weight")
                for k in range(GRADIENT_POINTS)]
    out = [("embed", "model.embed_tokens.weight")]
    if layout == "blocks":
        out += [(f"block{i}", f"model.layers.{i}.mlp.down_proj.weight") for i in range(n_layers)]
    else:
        out += [(f"attn{i}", f"model.layers.{i}.self_attn.o_proj.weight") for i in range(n_layers)]
        out += [(f"mlp{i}", f"model.layers.{i}.mlp.down_proj.weight") for i in range(n_layers)]
    return out + [("head", "lm_head.weight")]


def _pack(layout: Layout, genes: list[float], n_layers: int) -> Any:
    """Genes of one source parameter -> the recipe's layered value."""
    if layout == "model":
        return genes[0]
    if layout == "gradient":
        return list(genes)
    embed, head, body = genes[0], genes[-1], genes[1:-1]
    if layout == "blocks":
        return {"embed": embed, "default": body, "head": head}
    attn, mlp = body[:n_layers], body[n_layers:]
    # per-block norms (before attention / before MLP) follow the attention value
    return {"embed": embed, "attn": attn, "mlp": mlp, "default": attn, "head": head}


def _unpack(value: Any, layout: Layout, n_layers: int, fallback: float) -> list[float]:
    """A recipe's layered value read back at each gene's tensor (the engine's own rules)."""
    if layout == "gradient" and isinstance(value, list) and len(value) == GRADIENT_POINTS:
        return [float(v) for v in value]
    genes = []
    for _, name in _names(layout, n_layers):
        v = fallback if value is None else evaluate(value, tensor_group(name), depth_position(name, n_layers))
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            v = fallback
        genes.append(float(v))
    return genes


def _parameter_recipe(recipe: Any) -> Any:
    r = parse_recipe(recipe, "recipe") if isinstance(recipe, dict) else recipe
    if getattr(r, "kind", None) != "parameter":
        raise ConfigError("recipe: this genome needs a parameter recipe")
    return r


class _SourceGenes(SearchSpace):
    """Shared machinery: per source, per parameter, one block of genes in a fixed order."""

    def __init__(self, models: Models, params: list[tuple[str, Range, float]], layout: Layout) -> None:
        self.models = models
        self.layout: Layout = layout
        self.n_layers = model_layers(models.sources[0]) if layout != "model" else 1
        if layout == "gradient" and self.n_layers < GRADIENT_POINTS:
            raise ConfigError(f"search_space.groups: gradient needs >= {GRADIENT_POINTS} layers, "
                              f"{models.sources[0]} has {self.n_layers}")
        self.params = params                       # (name, range, fallback)
        self.genes_per = len(_names(layout, self.n_layers))
        lo, hi, x0 = [], [], []
        for _ in models.sources:
            for _, rng, fb in params:
                lo += [rng.low] * self.genes_per
                hi += [rng.high] * self.genes_per
                x0 += [rng.start(fb)] * self.genes_per
        self._lo, self._hi, self._x0 = np.array(lo), np.array(hi), np.array(x0)

    def gene_labels(self) -> list[str]:
        """Readable names, e.g. ``weight_math_block3`` (parameter, source, layer group)."""
        groups = [g for g, _ in _names(self.layout, self.n_layers)]
        return [f"{p}_{src}" + ("" if self.layout == "model" else f"_{g}")
                for src in short_names(list(self.models.sources)) for p, _, _ in self.params for g in groups]

    def _source_parameters(self, x: np.ndarray) -> list[dict[str, Any]]:
        x = self.clip(x)
        out, i = [], 0
        for _ in self.models.sources:
            params = {}
            for name, _, _ in self.params:
                params[name] = _pack(self.layout, [float(v) for v in x[i:i + self.genes_per]], self.n_layers)
                i += self.genes_per
            out.append(params)
        return out

    def _recipe(self, x: np.ndarray, method: str, base: str | None, parameters: dict[str, Any], seed: int,
                dtype: str | None) -> Any:
        data: dict[str, Any] = {"kind": "parameter", "method": method,
                                "sources": [{"model": m, "parameters": p}
                                            for m, p in zip(self.models.sources, self._source_parameters(x))],
                                "parameters": parameters, "seed": seed}
        if base is not None:
            data["base"] = base
        if dtype:
            data["dtype"] = dtype
        return parse_recipe(data, "search_space")

    def _genes_from_sources(self, sources: list[Any]) -> np.ndarray:
        if len(sources) != len(self.models.sources):
            raise ConfigError(f"recipe has {len(sources)} sources, the search space has {len(self.models.sources)}")
        genes: list[float] = []
        for src in sources:
            for name, _, fb in self.params:
                genes += _unpack(src.parameters.get(name), self.layout, self.n_layers, fb)
        return np.clip(np.array(genes, dtype=float), self._lo, self._hi)


class ParameterSpace(_SourceGenes):
    """TIES / DARE-style merges: weight (and density when the method sparsifies) per source."""

    kind = "parameter"
    Spec = ParameterSpec

    def __init__(self, spec: ParameterSpec, models: Models) -> None:
        method = METHODS.get(spec.method)
        if method is None or method.param("weight") is None:
            known = ", ".join(m for m, s in METHODS.items() if s.param("weight") is not None)
            raise ConfigError(f"search_space.method: {spec.method!r} is not a weighted merge method (known: {known})")
        if method.needs_base and models.base is None:
            raise ConfigError(f"models.base: method {spec.method} needs a base model")
        params = [("weight", spec.weight, 1.0)]
        if method.param("density") is not None:
            params.append(("density", spec.density, 1.0))
        self.spec = spec
        self.needs_base = method.needs_base
        super().__init__(models, params, spec.groups)
        self.to_recipe(self.x0)  # fixed parameters are validated now, not at the first candidate

    def to_recipe(self, x: np.ndarray) -> Any:
        return self._recipe(x, self.spec.method, self.models.base if self.needs_base else None,
                            dict(self.spec.parameters), self.spec.seed, self.spec.dtype)

    def from_recipe(self, recipe: Any) -> np.ndarray:
        return self._genes_from_sources(_parameter_recipe(recipe).sources)


class TaskVectorSpace(_SourceGenes):
    """theta = theta_base + sum_k c_k tau_k: one coefficient per expert (MAP's space)."""

    kind = "task_vector"
    Spec = TaskVectorSpec

    def __init__(self, spec: TaskVectorSpec, models: Models) -> None:
        if models.base is None:
            raise ConfigError("models.base: the task_vector space needs a base model")
        self.spec = spec
        super().__init__(models, [("weight", spec.coefficient, 0.5)], "model")

    def to_recipe(self, x: np.ndarray) -> Any:
        return self._recipe(x, "task_arithmetic", self.models.base, {"lambda": 1.0}, self.spec.seed, self.spec.dtype)

    def from_recipe(self, recipe: Any) -> np.ndarray:
        r = _parameter_recipe(recipe)
        lam = float(r.parameters.get("lambda", 1.0))
        genes = self._genes_from_sources(r.sources)
        return np.clip(genes * lam, self._lo, self._hi) if lam != 1.0 else genes

"""Recipes: the explicit, serializable description of a merged model (see docs/ARCHITECTURE.md).

Two kinds share one module so every part of evomerge speaks the same type:
`ParameterRecipe` (merge tensors of aligned models) and `DataflowRecipe` (route a path of
layers through several models). `load_recipe` reads either from YAML with one-line errors.
A leaf of the package: it knows the method registry and how config files are read, nothing else.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal, Union

import yaml
from pydantic import Field, field_validator, model_validator

from evomerge.config_io import StrictModel, read_yaml, require_mapping, validate
from evomerge.errors import ConfigError
from evomerge.ops import DTYPES, METHODS, MethodSpec
from evomerge.ops.layered import GROUPS, ParamValue


def _check_dtype(v: str | None) -> str | None:
    if v is not None and v not in DTYPES:
        raise ValueError(f"{v!r} is not one of {', '.join(DTYPES)}")
    return v


class _RecipeBase(StrictModel):
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (defaults included, unset optionals left out)."""
        return self.model_dump(mode="json", exclude_none=True)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)


class SourceSpec(StrictModel):
    """One input model with its per-source parameters (weight, density, ...)."""

    model: str
    parameters: dict[str, ParamValue] = Field(default_factory=dict)


class ParameterRecipe(_RecipeBase):
    """Merge aligned models tensor by tensor with one method (linear, ties, dare_ties, ...)."""

    kind: Literal["parameter"] = "parameter"
    method: str
    base: str | None = None
    sources: list[SourceSpec]
    parameters: dict[str, ParamValue] = Field(default_factory=dict)
    dtype: str | None = None
    compute_dtype: str | None = None  # None: float32
    seed: int = 0
    tokenizer_source: Union[int, str, None] = None

    _dtype = field_validator("dtype", "compute_dtype")(classmethod(lambda cls, v: _check_dtype(v)))

    @model_validator(mode="after")
    def _check(self) -> ParameterRecipe:
        _check_parameter_recipe(self)
        return self

    def model_refs(self) -> list[str]:
        """Every model the recipe reads, base first."""
        return ([self.base] if self.base else []) + [s.model for s in self.sources]


class DataflowSource(StrictModel):
    """A data-flow source: a model reference, or an inline parameter recipe (hybrid search)."""

    model: str | None = None
    recipe: ParameterRecipe | None = None

    @model_validator(mode="after")
    def _one(self) -> DataflowSource:
        if (self.model is None) == (self.recipe is None):
            raise ValueError("give exactly one of 'model' or 'recipe'")
        return self


class Hop(StrictModel):
    """One layer of the path: `layer` of `source`, hidden state multiplied by `scale` on entry."""

    source: int = Field(ge=0)
    layer: int = Field(ge=0)
    scale: float = 1.0
    # multiplies this layer's tensors whose name contains the key (first match in order; "*"
    # matches all): mergekit's passthrough `scale`, e.g. {o_proj: 0.0} silences attention
    tensor_scale: dict[str, float] | None = None

    @field_validator("scale")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError(f"{v} is not a finite number")
        return v

    @field_validator("tensor_scale")
    @classmethod
    def _finite_factors(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        for key, factor in (v or {}).items():
            if not math.isfinite(factor):
                raise ValueError(f"{key}: {factor} is not a finite number")
        return v

    def factor(self, tensor: str) -> float:
        """The tensor_scale factor for one of this layer's tensors (1 when none matches)."""
        return next((f for key, f in (self.tensor_scale or {}).items() if key == "*" or key in tensor), 1.0)


class DataflowRecipe(_RecipeBase):
    """A path of (source, layer, scale) hops; embeddings, final norm, head from one source."""

    kind: Literal["dataflow"]
    sources: list[DataflowSource] = Field(min_length=1)
    embeddings_from: int = Field(default=0, ge=0)
    head_from: int | None = Field(default=None, ge=0)  # final norm and head; None: embeddings_from
    layers: list[Hop] = Field(min_length=1)
    dtype: str | None = None
    compute_dtype: str | None = None  # None: float32
    seed: int = 0

    _dtype = field_validator("dtype", "compute_dtype")(classmethod(lambda cls, v: _check_dtype(v)))

    @model_validator(mode="after")
    def _indices(self) -> DataflowRecipe:
        n = len(self.sources)
        if self.embeddings_from >= n:
            raise ValueError(f"embeddings_from: {self.embeddings_from} but there are {n} sources")
        if self.head_from is not None and self.head_from >= n:
            raise ValueError(f"head_from: {self.head_from} but there are {n} sources")
        for i, hop in enumerate(self.layers):
            if hop.source >= n:
                raise ValueError(f"layers[{i}].source: {hop.source} but there are {n} sources")
        return self


Recipe = Union[ParameterRecipe, DataflowRecipe]


def _check_parameter_recipe(r: ParameterRecipe) -> None:
    """Method-aware checks: known method, base present, parameter names, types and ranges."""
    spec = METHODS.get(r.method)
    if spec is None:
        raise ValueError(f"method: unknown method {r.method!r} (known: {', '.join(METHODS)})")
    n = len(r.sources)
    if n < 1:
        raise ValueError("sources: at least one source is required")
    if spec.needs_base and r.base is None:
        raise ValueError(f"base: method {r.method} needs a base model")
    if not spec.needs_base and not spec.base_optional and r.base is not None:
        raise ValueError(f"base: method {r.method} does not use a base model; remove it")
    counted = n + (1 if spec.base_counts and r.base is not None else 0)
    lo, hi = spec.min_sources, spec.max_sources
    if counted < lo or (hi is not None and counted > hi):
        count = f"exactly {hi}" if hi == lo else (f"{lo} to {hi}" if hi else f"at least {lo}")
        if spec.base_counts:
            raise ValueError(f"sources: method {r.method} takes {count} models (a base counts as one), got {counted}")
        noun = "source" if (hi or lo) == 1 else "sources"
        besides = " besides the base" if spec.needs_base else ""
        raise ValueError(f"sources: method {r.method} takes {count} {noun}{besides}, got {n}")
    for key, value in r.parameters.items():
        _check_value(spec, key, value, "parameters", per_source=False)
    for i, src in enumerate(r.sources):
        for key, value in src.parameters.items():
            _check_value(spec, key, value, f"sources[{i}].parameters", per_source=True)
    for p in spec.params:
        if p.required and p.scope == "global" and p.name not in r.parameters:
            raise ValueError(f"parameters.{p.name}: required by method {r.method}")
    ts = r.tokenizer_source
    if isinstance(ts, int) and not 0 <= ts < n:
        raise ValueError(f"tokenizer_source: index {ts} but there are {n} sources")
    if ts == "base" and r.base is None:
        raise ValueError("tokenizer_source: 'base' but the recipe has no base")


def _check_value(spec: MethodSpec, key: str, value: Any, where: str, per_source: bool) -> None:
    p = spec.param(key)
    path = f"{where}.{key}"
    if p is None:
        raise ValueError(f"{path}: method {spec.name} has no parameter {key!r} "
                         f"(it takes: {', '.join(q.name for q in spec.params)})")
    if per_source and p.scope == "global":
        raise ValueError(f"{path}: {key!r} is a global parameter of {spec.name}; set it under parameters")
    if p.kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"{path}: {value!r} is not true/false")
        return
    if p.kind == "choice":
        if not isinstance(value, str) or value not in p.choices:
            raise ValueError(f"{path}: {value!r} is not one of {', '.join(p.choices)}")
        return
    for sub, number in _numbers(value, path):
        if not math.isfinite(number):
            raise ValueError(f"{sub}: {number} is not a finite number")
        if (p.lo is not None and number < p.lo) or (p.hi is not None and number > p.hi):
            lo, hi = ("-inf" if p.lo is None else f"{p.lo:g}"), ("inf" if p.hi is None else f"{p.hi:g}")
            raise ValueError(f"{sub}: {number} is outside [{lo}, {hi}]")


def _numbers(value: Any, path: str):
    """(path, number) for every number in a layered value; ValueError on a wrong shape."""
    if isinstance(value, bool) or isinstance(value, str):
        raise ValueError(f"{path}: {value!r} is not a number, list or group mapping")
    if isinstance(value, (int, float)):
        yield path, float(value)
    elif isinstance(value, list):
        if not value:
            raise ValueError(f"{path}: empty list")
        for i, v in enumerate(value):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError(f"{path}[{i}]: {v!r} is not a number")
            yield f"{path}[{i}]", float(v)
    elif isinstance(value, dict):
        for group, v in value.items():
            if group not in GROUPS:
                raise ValueError(f"{path}.{group}: unknown layer group (known: {', '.join(GROUPS)})")
            if isinstance(v, dict):
                raise ValueError(f"{path}.{group}: groups do not nest")
            yield from _numbers(v, f"{path}.{group}")


def _absolutize(data: Any, folder: Path) -> Any:
    """Rewrite relative local model paths against the YAML file's folder (zoo refs stay)."""
    if isinstance(data, dict):
        out = {}
        for k, v in data.items():
            local = (k in ("model", "base") and isinstance(v, str) and not v.startswith("zoo:")) or (
                k == "tokenizer_source" and isinstance(v, str) and v != "base")
            out[k] = str(folder / Path(v).expanduser()) if local else _absolutize(v, folder)
        return out
    if isinstance(data, list):
        return [_absolutize(v, folder) for v in data]
    return data


def parse_recipe(data: Any, source: str = "recipe", folder: Path | None = None) -> Recipe:
    """Validate a dict as a recipe (either kind); ConfigError with one line on failure.
    `folder`: where the YAML came from; relative model paths resolve against it."""
    kind = require_mapping(data, source).get("kind", "parameter")
    model = {"parameter": ParameterRecipe, "dataflow": DataflowRecipe}.get(kind)
    if model is None:
        raise ConfigError(f"{source}: kind: {kind!r} is not 'parameter' or 'dataflow'")
    return validate(model, data if folder is None else _absolutize(data, folder), source)


def load_recipe(path: str | Path) -> Recipe:
    """Read a recipe YAML; relative model paths resolve against the file's folder."""
    path = Path(path)
    return parse_recipe(read_yaml(path), str(path), path.resolve().parent)

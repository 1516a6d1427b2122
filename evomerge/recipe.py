"""Recipes: the explicit, serializable description of a merged model (see docs/ARCHITECTURE.md).

Two kinds share one module so every part of evomerge speaks the same type:
`ParameterRecipe` (merge tensors of aligned models) and `DataflowRecipe` (route a path of
layers through several models). `load_recipe` reads either from YAML with one-line errors.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from evomerge.errors import ConfigError
from evomerge.layers import layer_index
from evomerge.ops import DTYPES, METHODS

GROUPS = ("attn", "mlp", "embed", "head", "layernorm", "norm", "default")
PARENT = {"layernorm": "norm"}  # a mapping without the group falls back to its parent, then default
Number = Union[int, float]
Layered = Union[Number, list[Number], dict[str, Union[Number, list[Number]]]]
ParamValue = Union[bool, str, Layered]


def _check_dtype(v: str | None) -> str | None:
    if v is not None and v not in DTYPES:
        raise ValueError(f"{v!r} is not one of {', '.join(DTYPES)}")
    return v


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class _RecipeBase(_Strict):
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (defaults included, unset optionals left out)."""
        return self.model_dump(mode="json", exclude_none=True, by_alias=True)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)


class SourceSpec(_Strict):
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


class DataflowSource(_Strict):
    """A data-flow source: a model reference, or an inline parameter recipe (hybrid search)."""

    model: str | None = None
    recipe: ParameterRecipe | None = None

    @model_validator(mode="after")
    def _one(self) -> DataflowSource:
        if (self.model is None) == (self.recipe is None):
            raise ValueError("give exactly one of 'model' or 'recipe'")
        return self


class Hop(_Strict):
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
    if spec.name == "slerp":
        if (r.base is None and n != 2) or (r.base is not None and n != 1):
            raise ValueError("sources: slerp takes a base and one source, or two sources without base")
    elif spec.needs_base and r.base is None:
        raise ValueError(f"base: method {r.method} needs a base model")
    elif not spec.needs_base and not spec.base_optional and r.base is not None:
        raise ValueError(f"base: method {r.method} does not use a base model; remove it")
    if n < spec.min_sources or (spec.max_sources is not None and n > spec.max_sources and spec.name != "slerp"):
        lo, hi = spec.min_sources, spec.max_sources
        count = f"exactly {hi}" if hi == lo else (f"{lo} to {hi}" if hi else f"at least {lo}")
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


def _check_value(spec, key: str, value: Any, where: str, per_source: bool) -> None:
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


# ---- parameter values per tensor -------------------------------------------------------------

def tensor_group(tensor_name: str) -> str:
    """Layer group of a tensor (Llama-style names), most specific first."""
    if "self_attn" in tensor_name:
        return "attn"
    if ".mlp." in tensor_name:
        return "mlp"
    if "embed_tokens" in tensor_name:
        return "embed"
    if "lm_head" in tensor_name:
        return "head"
    if "norm" in tensor_name:
        return "layernorm" if layer_index(tensor_name) is not None else "norm"
    return "default"


def depth_position(tensor_name: str, num_layers: int) -> float:
    """Where a tensor sits in depth for gradients: layer i -> i/(L-1); outside blocks -> 0.

    Matches mergekit 0.1.5 (embeddings, final norm and head all read a gradient's first value;
    a single-layer model reads its last value).
    """
    i = layer_index(tensor_name)
    if i is None:
        return 0.0
    return i / (num_layers - 1) if num_layers > 1 else 1.0


def interpolate(values: list[float], t: float) -> float:
    """A gradient list read at depth t in [0, 1], linear between neighbouring values."""
    scaled = t * (len(values) - 1)
    i0 = int(scaled)
    i1 = min(len(values) - 1, i0 + 1)
    frac = scaled - i0
    return (1 - frac) * values[i0] + frac * values[i1]


def evaluate(value: ParamValue, group: str, t: float) -> Any:
    """A parameter value for one tensor; None when a group mapping does not cover the group."""
    if isinstance(value, dict):
        while group not in value and group in PARENT:
            group = PARENT[group]
        value = value.get(group, value.get("default"))
        if value is None:
            return None
    if isinstance(value, list):
        return interpolate([float(v) for v in value], t)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return value


# ---- loading ---------------------------------------------------------------------------------


def resolve_model_ref(ref: str, relative_to: Path | None = None) -> Path:
    """A model reference as a local directory: `zoo:NAME` via evomerge.zoo, else a path."""
    if ref.startswith("zoo:"):
        from evomerge.zoo import resolve

        return Path(resolve(ref))
    path = Path(ref).expanduser()
    if not path.is_absolute() and relative_to is not None:
        path = relative_to / path
    return path


def _absolutize(data: Any, folder: Path) -> Any:
    """Rewrite relative local model paths against the YAML file's folder (zoo refs stay)."""
    if isinstance(data, dict):
        out = {}
        for k, v in data.items():
            if k in ("model", "base") and isinstance(v, str) and not v.startswith("zoo:"):
                v = str(resolve_model_ref(v, folder))
            elif k == "tokenizer_source" and isinstance(v, str) and v != "base":
                v = str(resolve_model_ref(v, folder))
            out[k] = _absolutize(v, folder)
        return out
    if isinstance(data, list):
        return [_absolutize(v, folder) for v in data]
    return data


def format_validation_error(err: ValidationError, prefix: str = "") -> str:
    """The first pydantic error as one line: `prefix: field.path: what is wrong`."""
    errors = err.errors()
    e = next((x for x in errors if x["type"] == "extra_forbidden"), errors[0])  # typos first
    parts = []
    for part in e["loc"]:
        if isinstance(part, int) and parts:
            parts[-1] += f"[{part}]"
        elif part not in ("ParameterRecipe", "DataflowRecipe", "native_task", "lm_eval_task"):  # union tags
            parts.append(str(part))
    msg = str(e["msg"]).removeprefix("Value error, ")
    if e["type"] == "missing":
        msg = "required field is missing"
    elif e["type"] == "extra_forbidden":
        msg = "unknown field"
    loc = ".".join(parts)
    line = f"{loc}: {msg}" if loc else msg
    return f"{prefix}: {line}" if prefix else line


def parse_recipe(data: Any, source: str = "recipe") -> Recipe:
    """Validate a dict as a recipe (either kind); ConfigError with one line on failure."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at top level, got {type(data).__name__}")
    kind = data.get("kind", "parameter")
    model = {"parameter": ParameterRecipe, "dataflow": DataflowRecipe}.get(kind)
    if model is None:
        raise ConfigError(f"{source}: kind: {kind!r} is not 'parameter' or 'dataflow'")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from None


def read_yaml(path: str | Path) -> Any:
    """safe_load a YAML file; ConfigError naming the file when missing or malformed."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{path}: cannot read ({err.strerror or err})") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset {err.start})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        what = str(getattr(err, "problem", None) or err).strip().splitlines() or ["unreadable"]
        raise ConfigError(f"{path}: malformed YAML{where}: {what[0]}") from None


def load_recipe(path: str | Path) -> Recipe:
    """Read a recipe YAML; relative model paths resolve against the file's folder."""
    path = Path(path)
    data = read_yaml(path)
    if isinstance(data, dict):
        data = _absolutize(data, path.resolve().parent)
    return parse_recipe(data, str(path))

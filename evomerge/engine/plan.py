"""A parameter recipe resolved against its models: which tensors, which output dtype, and the
method's parameters for every tensor (layer groups and gradients evaluated). Both the
streaming and the in-memory paths run from the same plan, so they compute the same tensors."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import torch

from evomerge import layers
from evomerge.engine.source import TensorSource
from evomerge.errors import CheckpointError, ConfigError
from evomerge.ops import MethodSpec, TensorParams, get_method
from evomerge.ops.compute_dtype import DTYPES
from evomerge.ops.layered import depth_position, evaluate, tensor_group
from evomerge.recipe import ParameterRecipe


@dataclass
class MergePlan:
    recipe: ParameterRecipe
    spec: MethodSpec
    names: list[str]
    shapes: dict[str, tuple[int, ...]]
    out_dtypes: dict[str, torch.dtype]
    params: dict[str, TensorParams]
    num_layers: int

    @property
    def compute_dtype(self) -> str:
        """The dtype the merge arithmetic runs in (inputs are cast to it)."""
        return self.recipe.compute_dtype or "float32"

    def layout(self) -> list[tuple[str, tuple[int, ...], torch.dtype]]:
        return [(n, self.shapes[n], self.out_dtypes[n]) for n in self.names]


def _natural(name: str) -> list:
    return [int(s) if s.isdigit() else s for s in re.split(r"(\d+)", name)]


def check_compatible(models: list[tuple[str, TensorSource]], same_dtype: bool = False) -> list[str]:
    """Same tensor names and shapes in every model (and dtypes, if `same_dtype`: resident
    sources are read in place, so a worker's models must agree); the names in natural order."""
    (ref_name, ref), *others = models
    names = set(ref.names)
    for label, m in others:
        theirs = set(m.names)
        if theirs != names:
            extra = sorted(theirs - names)
            missing = sorted(names - theirs)
            what = f"has extra tensor {extra[0]}" if extra else f"lacks tensor {missing[0]}"
            raise CheckpointError(f"{label}: {what} (compared with {ref_name}); architectures differ")
        for n in names:
            if tuple(m.shape(n)) != tuple(ref.shape(n)):
                raise CheckpointError(f"{label}: tensor {n} has shape {tuple(m.shape(n))}, "
                                      f"{ref_name} has {tuple(ref.shape(n))}")
            if same_dtype and m.dtype(n) != ref.dtype(n):
                raise CheckpointError(f"{label}: tensor {n} is {str(m.dtype(n)).removeprefix('torch.')}, "
                                      f"{ref_name} has {str(ref.dtype(n)).removeprefix('torch.')}; "
                                      "convert the sources to one dtype")
    return sorted(names, key=_natural)


def _value(scopes: list[tuple[str, dict]], key: str, group: str, t: float, default, name: str):
    for where, params in scopes:
        if key in params:
            v = evaluate(params[key], group, t)
            if v is not None:
                return v
    if default is None:
        raise ConfigError(f"{scopes[0][0]}.{key}: required, not set for tensor {name}")
    return default


def tensor_params(recipe: ParameterRecipe, spec: MethodSpec, name: str, num_layers: int) -> TensorParams:
    """The method's parameters for one tensor: per source, then global, then the default."""
    group, t = tensor_group(name), depth_position(name, num_layers)
    glob = [("parameters", recipe.parameters)]
    per_source: dict[str, list[float]] = {p.name: [] for p in spec.source_params()}
    for i, src in enumerate(recipe.sources):
        scopes = [(f"sources[{i}].parameters", src.parameters)] + glob
        for p in spec.source_params():
            per_source[p.name].append(float(_value(scopes, p.name, group, t, p.default, name)))
    globals_ = {p.name: _value(glob, p.name, group, t, p.default, name) for p in spec.global_params()}
    return TensorParams(name=name, method=spec.name, weights=per_source.get("weight", []),
                        densities=per_source.get("density", []), gammas=per_source.get("gamma", []),
                        epsilons=per_source.get("epsilon", []),
                        globals=globals_, seed=recipe.seed, compute_dtype=recipe.compute_dtype or "float32")


def build_plan(recipe: ParameterRecipe, models: list[tuple[str, TensorSource]],
               names: list[str] | None = None) -> MergePlan:
    """`models`: (label, source) for the base (if any) then each recipe source, in order.
    `names`: the result of an earlier `check_compatible` on the same models (skips the check)."""
    spec = get_method(recipe.method)
    names = names if names is not None else check_compatible(models)
    ref = models[0][1]
    num_layers = max(1, layers.num_layers(ref.config(), names))
    out = DTYPES.get(recipe.dtype) if recipe.dtype else None
    out_dtypes = {}
    for n in names:
        dt = ref.dtype(n)
        if not dt.is_floating_point:
            raise CheckpointError(f"{models[0][0]}: tensor {n} is {dt}, not floating point; cannot merge")
        out_dtypes[n] = out or dt
    by_place: dict[tuple[str, float], TensorParams] = {}  # parameters depend on group and depth only
    params = {}
    for n in names:
        place = (tensor_group(n), depth_position(n, num_layers))
        if place not in by_place:
            by_place[place] = tensor_params(recipe, spec, n, num_layers)
        q = by_place[place]
        params[n] = replace(q, name=n)
    return MergePlan(recipe, spec, names, {n: tuple(ref.shape(n)) for n in names}, out_dtypes,
                     params, num_layers)

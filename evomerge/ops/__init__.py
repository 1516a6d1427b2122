"""Merge methods as data: each method declares its parameters here, its tensor math lives in a
module of this package. The registry imports no torch, so recipes can be validated cheaply.

A new method is one new module plus one `MethodSpec` line in `METHODS`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

Scope = Literal["source", "global"]
Kind = Literal["float", "bool", "choice"]


@dataclass(frozen=True)
class ParamDef:
    """One parameter of a method: where it is set, its type, default and allowed range."""

    name: str
    scope: Scope
    kind: Kind = "float"
    default: Any = None
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] = ()
    layered: bool = True  # may vary by layer group / gradient across depth

    @property
    def required(self) -> bool:
        return self.default is None


@dataclass(frozen=True)
class MethodSpec:
    """A merge method: its parameters and where its tensor function lives ("module:function")."""

    name: str
    function: str
    params: tuple[ParamDef, ...]
    needs_base: bool = True
    sparsify: str | None = None  # magnitude | random | outliers (task-vector methods)
    consensus: bool = False  # TIES sign election
    min_sources: int = 1
    max_sources: int | None = None
    base_optional: bool = False  # may take a base without needing one (nuslerp: task-vector space)
    base_counts: bool = False  # a base is one of the models min/max_sources count (slerp)
    any_dtype: bool = False  # its function computes in TensorParams.compute_dtype itself
    _fn: list = field(default_factory=list, compare=False, repr=False)

    def param(self, name: str) -> ParamDef | None:
        return next((p for p in self.params if p.name == name), None)

    def source_params(self) -> tuple[ParamDef, ...]:
        return tuple(p for p in self.params if p.scope == "source")

    def global_params(self) -> tuple[ParamDef, ...]:
        return tuple(p for p in self.params if p.scope == "global")

    def fn(self) -> Callable:
        """The tensor function, imported on first use (torch is only needed here)."""
        if not self._fn:
            self._fn.append(_resolve(self.function))
        return self._fn[0]

    def fn_for(self, compute_dtype: str) -> Callable:
        """The tensor function for a compute dtype: 16-bit math (mergekit's `dtype`) goes
        through ops.compute_dtype unless the method computes in any dtype itself."""
        if compute_dtype == "float32" or self.any_dtype:
            return self.fn()
        return _resolve(COMPUTE_DTYPE_FUNCTION)


DTYPES = ("float32", "bfloat16", "float16")  # the dtypes a recipe may name (ops.compute_dtype.DTYPES maps them to torch)
COMPUTE_DTYPE_FUNCTION = "evomerge.ops.compute_dtype:merge"  # every method's math in bf16 / fp16


def _resolve(function: str) -> Callable:
    """A "module:function" string's function (the registry names modules, never imports them)."""
    module, attr = function.split(":")
    return getattr(importlib.import_module(module), attr)


WEIGHT = ParamDef("weight", "source", default=1.0)
DENSITY = ParamDef("density", "source", default=1.0, lo=0.0, hi=1.0)
GAMMA = ParamDef("gamma", "source", default=0.01, lo=0.0, hi=1.0)
EPSILON = ParamDef("epsilon", "source", default=0.15, lo=0.0, hi=0.5)
LAMBDA = ParamDef("lambda", "global", default=1.0)
RESCALES = ("none", "inverse_density", "l1")


def _normalize(default: bool) -> ParamDef:
    return ParamDef("normalize", "global", kind="bool", default=default, layered=False)


def _rescale(default: str) -> ParamDef:
    return ParamDef("rescale", "global", kind="choice", default=default, choices=RESCALES, layered=False)


def _task_vector(name: str, sparsify: str | None, consensus: bool, normalize: bool, rescale: str,
                 extra: tuple[ParamDef, ...] = (), function: str = "evomerge.ops.task_vector:merge",
                 any_dtype: bool = False) -> MethodSpec:
    params = (WEIGHT,) + ((DENSITY,) if sparsify else ()) + extra
    params += (LAMBDA, _normalize(normalize), _rescale(rescale))
    return MethodSpec(name, function, params, sparsify=sparsify, consensus=consensus, any_dtype=any_dtype)


def _own(name: str, params: tuple[ParamDef, ...], **kw) -> MethodSpec:
    """A method in its own module `evomerge.ops.NAME`, computing in the compute dtype."""
    return MethodSpec(name, f"evomerge.ops.{name}:merge", params, any_dtype=True, **kw)


def _flag(name: str, default: bool) -> ParamDef:
    return ParamDef(name, "global", kind="bool", default=default, layered=False)


# Defaults follow mergekit's for the same method names, so a mergekit config means the same
# thing here; DARE's default rescale is the paper's 1/density (mergekit's is "l1").
METHODS: dict[str, MethodSpec] = {
    m.name: m
    for m in (
        # weighted average of the sources (model soup)
        MethodSpec("linear", "evomerge.ops.linear:merge", (WEIGHT, _normalize(True)), needs_base=False),
        # base + lambda * sum w_k tau_k
        _task_vector("task_arithmetic", None, False, False, "none"),
        # trim, elect sign, disjoint merge
        _task_vector("ties", "magnitude", True, True, "none"),
        # random drop + rescale
        _task_vector("dare_linear", "random", False, False, "inverse_density"),
        # DARE drop + TIES sign election
        _task_vector("dare_ties", "random", True, False, "inverse_density"),
        # drop largest outliers and smallest entries
        _task_vector("breadcrumbs", "outliers", False, False, "none", extra=(GAMMA,)),
        # breadcrumbs + TIES sign election
        _task_vector("breadcrumbs_ties", "outliers", True, False, "none", extra=(GAMMA,)),
        # spherical interpolation from the base (or first source) at t=0 to the other model at t=1
        MethodSpec("slerp", "evomerge.ops.slerp:merge", (ParamDef("t", "global", default=None, lo=0.0, hi=1.0),),
                   needs_base=False, base_optional=True, base_counts=True, min_sources=2, max_sources=2),
        # rank-weighted random drop + TIES
        _task_vector("della", "magnitude_rank", True, True, "inverse_density", extra=(EPSILON,),
                     function="evomerge.ops.della:merge", any_dtype=True),
        # rank-weighted random drop
        _task_vector("della_linear", "magnitude_rank", False, False, "inverse_density", extra=(EPSILON,),
                     function="evomerge.ops.della:merge", any_dtype=True),
        # select by variance, weight by mean square, erase by sign
        _own("sce", (ParamDef("select_topk", "global", default=1.0, lo=0.0, hi=1.0),), min_sources=1),
        # base-to-average ratio from task-vector angles
        _own("model_stock", (_flag("filter_wise", False),), min_sources=2),
        # slerp of two models (of their task vectors with a base), t from weights
        _own("nuslerp", (WEIGHT, _flag("nuslerp_flatten", True), _flag("nuslerp_row_wise", False)),
             needs_base=False, base_optional=True, min_sources=2, max_sources=2),
        # Riemannian mean of directions times mean norm
        _own("karcher", (ParamDef("max_iter", "global", default=10, lo=0, hi=1000, layered=False),
                         ParamDef("tol", "global", default=1e-5, lo=0.0, layered=False)),
             needs_base=False, min_sources=2),
        # fuse the other model's changes where importance is an outlier
        _own("arcee_fusion", (), max_sources=1),
        # swap in the other model's entries where they are near the base
        _own("nearswap", (ParamDef("t", "global", default=None, lo=0.0),), max_sources=1),
        # weighted spherical mean of any number of models
        _own("multislerp", (WEIGHT, _flag("normalize_weights", True),
                            ParamDef("eps", "global", default=1e-8, lo=0.0, layered=False)),
             needs_base=False, base_optional=True),
        # unique changes in full, shared ones averaged
        _own("ram", (ParamDef("epsilon", "global", default=1e-5, lo=0.0),)),
        # RAM with unique changes boosted by their overlap ratio
        MethodSpec("ramplus_tl", "evomerge.ops.ram:merge",
                   (ParamDef("r", "global", default=0.1), ParamDef("alpha", "global", default=0.2, lo=0.0),
                    ParamDef("epsilon", "global", default=1e-5, lo=0.0)),
                   any_dtype=True),
    )
}


@dataclass
class TensorParams:
    """Parameters of one merge resolved for one tensor (what the tensor functions read)."""

    name: str
    method: str
    weights: list[float]
    densities: list[float]
    gammas: list[float]
    globals: dict[str, Any]
    seed: int = 0
    epsilons: list[float] = field(default_factory=list)
    compute_dtype: str = "float32"  # float32 | bfloat16 | float16: inputs cast to it, math in it


def get_method(name: str) -> MethodSpec:
    """The spec of a method by name; KeyError if unknown (recipe validation reports it)."""
    return METHODS[name]

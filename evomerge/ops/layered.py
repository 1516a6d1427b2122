"""Layered parameter values, read at one tensor: a number, a gradient list across depth, or a
mapping from layer group to either. The engine's plan reads each method parameter this way
for every tensor; the genomes read a recipe's values back at their genes' tensors the same
way, and the mergekit converter at its probe tensors. Torch-free, like the method registry."""

from __future__ import annotations

from typing import Any, Union

from evomerge.layers import layer_index

GROUPS = ("attn", "mlp", "embed", "head", "layernorm", "norm", "default")
PARENT = {"layernorm": "norm"}  # a mapping without the group falls back to its parent, then default
Number = Union[int, float]
Layered = Union[Number, list[Number], dict[str, Union[Number, list[Number]]]]
ParamValue = Union[bool, str, Layered]

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

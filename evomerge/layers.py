"""Decoder layers, the one rule for them: a tensor belongs to layer N when its name has a
`layers.N.` part (`model.layers.7.mlp.up_proj.weight`), and a model's layer count is its
config's `num_hidden_layers` (else counted from its tensor names). Torch-free."""

from __future__ import annotations

import re
from collections.abc import Iterable

LAYER_NAME = re.compile(r"^((?:.*?\.)?layers\.)(\d+)\.(.+)$")


def split_layer_name(name: str) -> tuple[str, int, str] | None:
    """(prefix up to `layers.`, layer index, the rest) of a tensor name inside the numbered
    layers (`model.layers.7.mlp.up_proj.weight` -> ("model.layers.", 7, "mlp.up_proj.weight")),
    None outside them."""
    m = LAYER_NAME.match(name)
    return (m.group(1), int(m.group(2)), m.group(3)) if m else None


def layer_index(name: str) -> int | None:
    """Layer index of a tensor (`model.layers.7.mlp...` -> 7), None outside the layers."""
    m = LAYER_NAME.match(name)
    return int(m.group(2)) if m else None


def num_layers(config: dict, names: Iterable[str] = ()) -> int:
    """Decoder layer count: the config's `num_hidden_layers` when it is a positive integer,
    else one more than the highest layer index among `names` (0 when there is none)."""
    n = config.get("num_hidden_layers")
    if isinstance(n, int) and not isinstance(n, bool) and n > 0:
        return n
    return max((i + 1 for i in map(layer_index, names) if i is not None), default=0)

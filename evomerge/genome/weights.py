"""Raw-weight genomes for small nets evolved from scratch (M2N2's digits experiment).

The genome is the net's flat weight vector; its "recipe" is that vector plus the net's shape,
a plain dict (``kind: weights``) the weights evaluator rebuilds the net from. There is nothing
to merge from, so the space ignores the experiment's models.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from evomerge.config_io import StrictModel
from evomerge.errors import ConfigError
from evomerge.genome.base import Models, SearchSpace

NETS = {"digits_mlp": lambda hidden: [(64, hidden), (hidden,), (hidden, 10), (10,)]}


class WeightsSpec(StrictModel):
    kind: Literal["weights"] = "weights"
    net: Literal["digits_mlp"] = "digits_mlp"
    hidden: int = Field(default=10, ge=1, le=512)
    bound: float = Field(default=3.0, gt=0)     # every weight in [-bound, bound]
    init_seed: int = 0                          # x0 = a seeded Xavier-style initialization


class WeightsSpace(SearchSpace):
    kind = "weights"
    Spec = WeightsSpec

    @classmethod
    def from_spec(cls, spec: WeightsSpec, models: Models, folder: Path | None = None) -> WeightsSpace:
        """A net evolved from scratch: no source models."""
        return cls(spec)

    def __init__(self, spec: WeightsSpec) -> None:
        self.spec = spec
        self.shapes = NETS[spec.net](spec.hidden)
        n = int(sum(np.prod(s) for s in self.shapes))
        self._lo, self._hi = np.full(n, -spec.bound), np.full(n, spec.bound)
        rng = np.random.default_rng(spec.init_seed)
        parts = [rng.normal(0.0, 1.0 / np.sqrt(s[0]), s) if len(s) == 2 else np.zeros(s) for s in self.shapes]
        self._x0 = np.clip(np.concatenate([p.reshape(-1) for p in parts]), self._lo, self._hi)

    def to_recipe(self, x: np.ndarray) -> dict[str, Any]:
        return {"kind": "weights", "net": self.spec.net, "hidden": self.spec.hidden,
                "weights": [float(v) for v in self.clip(x)]}

    def from_recipe(self, recipe: Any) -> np.ndarray:
        if not isinstance(recipe, dict) or recipe.get("kind") != "weights" or recipe.get("net") != self.spec.net \
                or recipe.get("hidden") != self.spec.hidden:
            raise ConfigError(f"recipe: not a {self.spec.net} (hidden {self.spec.hidden}) weights recipe")
        return self.clip(recipe["weights"])

"""Data-flow genomes: which layer slots a token passes through, and how the hidden state is
scaled when the path crosses from one model to another.

With M sources of L_m layers and r repetitions the candidate sequence has T = r * sum(L_m)
slots (model 1's layers, model 2's, ..., repeated r times). The genome is one inclusion gene per
slot (used when > 0) followed by the M x M scaling matrix W (row-major): a hop into a layer of
model j right after a layer of model i (or after model i's embeddings) multiplies the hidden
state by W[i][j]. The start point switches on exactly model A's layers in the first repetition
with W = 1, so the search starts from model A itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from evomerge.config_io import StrictModel
from evomerge.errors import ConfigError
from evomerge.genome.base import Models, Range, SearchSpace, model_layers, short_names
from evomerge.recipe import parse_recipe


class DataflowSpec(StrictModel):
    kind: Literal["dataflow"] = "dataflow"
    repetitions: int = Field(default=2, ge=1, le=16)
    indicator: Range = Field(default_factory=lambda: Range(low=-1.0, high=1.0))
    scale: Range = Field(default_factory=lambda: Range(low=0.25, high=2.0, init=1.0))
    embeddings_from: int = Field(default=0, ge=0)
    head_from: int | None = Field(default=None, ge=0)  # final norm + lm_head; None: embeddings_from
    dtype: str | None = None
    seed: int = 0

    @model_validator(mode="after")
    def _signs(self) -> "DataflowSpec":
        if not self.indicator.low < 0.0 < self.indicator.high:
            raise ValueError("indicator: bounds must straddle 0 (a slot is used when its gene is > 0)")
        if self.scale.low <= 0.0:
            raise ValueError("scale: low must be > 0 (scales fold into weights only when positive)")
        return self


class DataflowSpace(SearchSpace):
    """Routes a path through layers of ``sources`` (model refs or inline parameter recipes)."""

    kind = "dataflow"
    Spec = DataflowSpec

    def __init__(self, spec: DataflowSpec, sources: list[dict[str, Any]], layers: list[int]) -> None:
        if spec.embeddings_from >= len(sources):
            raise ConfigError(f"search_space.embeddings_from: {spec.embeddings_from} but there are "
                              f"{len(sources)} sources")
        if spec.head_from is not None and spec.head_from >= len(sources):
            raise ConfigError(f"search_space.head_from: {spec.head_from} but there are {len(sources)} sources")
        self.spec, self.sources, self.layers = spec, sources, list(layers)
        self.M = len(sources)
        self.slots = [(m, l) for _ in range(spec.repetitions) for m in range(self.M) for l in range(layers[m])]
        self.T = len(self.slots)
        ind, sc = spec.indicator, spec.scale
        self.on, self.off = ind.high / 2.0, ind.low / 2.0
        self._lo = np.array([ind.low] * self.T + [sc.low] * self.M ** 2)
        self._hi = np.array([ind.high] * self.T + [sc.high] * self.M ** 2)
        a = spec.embeddings_from
        first = [self.on if (i < sum(layers) and m == a) else self.off for i, (m, _) in enumerate(self.slots)]
        self._x0 = np.array(first + [sc.start(1.0)] * self.M ** 2)

    @classmethod
    def from_spec(cls, spec: DataflowSpec, models: Models, folder: Path | None = None) -> DataflowSpace:
        """A path through the layers of the experiment's source models."""
        models.require_sources()
        return cls(spec, [{"model": m} for m in models.sources], [model_layers(m) for m in models.sources])

    def gene_labels(self) -> list[str]:
        """``slot7_math_L3`` (is slot 7, layer 3 of source math, on the path?) then
        ``scale_math_to_words`` (hidden-state scale when the path moves between them)."""
        names = short_names([s.get("model") or "merge" for s in self.sources])
        return ([f"slot{t}_{names[m]}_L{layer}" for t, (m, layer) in enumerate(self.slots)]
                + [f"scale_{names[i]}_to_{names[j]}" for i in range(self.M) for j in range(self.M)])

    def hops(self, x: np.ndarray) -> list[dict[str, Any]]:
        """The path of genome x: [{source, layer, scale}, ...] in slot order."""
        x = self.clip(x)
        W = x[self.T:].reshape(self.M, self.M)
        prev, out = self.spec.embeddings_from, []
        for gene, (m, layer) in zip(x[:self.T], self.slots):
            if gene > 0:
                out.append({"source": m, "layer": layer, "scale": float(W[prev, m])})
                prev = m
        return out

    def to_recipe(self, x: np.ndarray) -> Any:
        hops = self.hops(x)
        if not hops:
            raise ConfigError("dataflow genome switches on no layer slot (empty path)")
        data: dict[str, Any] = {"kind": "dataflow", "sources": [dict(s) for s in self.sources],
                                "embeddings_from": self.spec.embeddings_from, "layers": hops,
                                "seed": self.spec.seed}
        if self.spec.head_from is not None:
            data["head_from"] = self.spec.head_from
        if self.spec.dtype:
            data["dtype"] = self.spec.dtype
        return parse_recipe(data, "search_space")

    def from_recipe(self, recipe: Any) -> np.ndarray:
        r = parse_recipe(recipe, "recipe") if isinstance(recipe, dict) else recipe
        if getattr(r, "kind", None) != "dataflow":
            raise ConfigError("recipe: a data-flow genome needs a dataflow recipe")
        head = lambda h, emb: emb if h is None else h  # noqa: E731
        if (len(r.sources) != self.M or r.embeddings_from != self.spec.embeddings_from
                or head(r.head_from, r.embeddings_from) != head(self.spec.head_from, self.spec.embeddings_from)):
            raise ConfigError("recipe: its sources / embeddings_from / head_from differ from the search space's")
        genes = np.full(self.T, self.off)
        W = np.full((self.M, self.M), np.nan)
        slot, prev = 0, r.embeddings_from
        for k, hop in enumerate(r.layers):
            while slot < self.T and self.slots[slot] != (hop.source, hop.layer):
                slot += 1
            if slot == self.T:
                raise ConfigError(f"recipe: layers[{k}] does not fit the {self.spec.repetitions} "
                                  f"repetitions of the search space")
            genes[slot] = self.on
            slot += 1
            if not np.isnan(W[prev, hop.source]) and W[prev, hop.source] != hop.scale:
                raise ConfigError(f"recipe: layers[{k}].scale: the {prev}->{hop.source} crossing already "
                                  f"has scale {W[prev, hop.source]}")
            W[prev, hop.source] = hop.scale
            prev = hop.source
        W = np.where(np.isnan(W), self.spec.scale.start(1.0), W)
        return np.clip(np.concatenate([genes, W.reshape(-1)]), self._lo, self._hi)

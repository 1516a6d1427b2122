"""What every search space offers: box bounds, a start point, and vector <-> recipe maps.

A genome is only the searcher's coordinates; the recipe it maps to is what gets stored,
materialized and exported. Spaces are built from YAML specs (search_spaces/*.yaml) plus the
experiment's models, validated with pydantic so a bad file fails with one line.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import model_validator

from evomerge.config_io import StrictModel
from evomerge.errors import CheckpointError, ConfigError
from evomerge.layers import num_layers
from evomerge.zoo import resolve_model_ref


class Range(StrictModel):
    """Bounds of one kind of gene and where the search starts."""

    low: float
    high: float
    init: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> "Range":
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.init is not None and not self.low <= self.init <= self.high:
            raise ValueError(f"init ({self.init}) lies outside [{self.low}, {self.high}]")
        return self

    def start(self, fallback: float) -> float:
        return float(self.init) if self.init is not None else float(np.clip(fallback, self.low, self.high))


@dataclass(frozen=True)
class Models:
    """The experiment's models: an optional base (task-vector methods) and the sources."""

    sources: tuple[str, ...]
    base: str | None = None

    def require_sources(self) -> None:
        """ConfigError unless there is a source model to merge."""
        if not self.sources:
            raise ConfigError("models.sources: at least one source model is required")


class SearchSpace(ABC):
    """Maps vectors in the box [lower, upper] to recipes and back.

    ``to_recipe(x)`` clips x into the box first. ``from_recipe`` inverts it: for parameter
    spaces ``from_recipe(to_recipe(x)) == x`` for any x inside the box; for data-flow spaces
    genes that a recipe does not show (unused slots' magnitudes, unused scales) come back at
    canonical values, so there the round trip holds on the recipe side.

    A kind of space is a subclass naming its ``kind`` (the YAML's ``kind:``) and its ``Spec``
    (the YAML's pydantic model), registered in ``evomerge.genome.SPACES``.
    """

    kind: str = "space"
    Spec: type[StrictModel]
    _lo: np.ndarray   # set by every subclass's __init__
    _hi: np.ndarray
    _x0: np.ndarray

    @classmethod
    def from_spec(cls, spec: Any, models: Models, folder: Path | None = None) -> SearchSpace:
        """The space over the experiment's models (``folder``: where relative paths in the spec
        resolve); by default ``cls(spec, models)``, which needs at least one source model."""
        models.require_sources()
        return cls(spec, models)

    @classmethod
    def inline_paths(cls, spec: dict[str, Any], folder: Path) -> dict[str, Any]:
        """The spec with the files it names made absolute against ``folder`` (so the experiment
        stored with a run is self-contained); a space that names no files keeps it as it is."""
        return spec

    @property
    def lower(self) -> np.ndarray:
        return self._lo

    @property
    def upper(self) -> np.ndarray:
        return self._hi

    @property
    def x0(self) -> np.ndarray:
        """The start point (model A for data-flow spaces; each range's ``init`` otherwise)."""
        return self._x0

    @property
    def dim(self) -> int:
        return int(self.lower.size)

    @abstractmethod
    def to_recipe(self, x: np.ndarray) -> Any:
        """The explicit recipe (an evomerge.recipe object, or a plain dict) for genome x."""

    @abstractmethod
    def from_recipe(self, recipe: Any) -> np.ndarray:
        """The genome of a recipe of this space's shape (ConfigError when it does not fit)."""

    def clip(self, x: Any) -> np.ndarray:
        v = np.asarray(x, dtype=float).reshape(-1)
        if v.size != self.dim:
            raise ConfigError(f"genome has length {v.size}, the {self.kind} space expects {self.dim}")
        return np.clip(v, self.lower, self.upper)

    def gene_labels(self) -> list[str]:
        """One readable, unique name per gene (the run store's Optuna parameter names)."""
        return [f"g{i}" for i in range(self.dim)]

    def recipe_dict(self, x: np.ndarray) -> dict[str, Any]:
        """The recipe for x as a plain JSON-able dict (what jobs and the store carry)."""
        r = self.to_recipe(x)
        return r if isinstance(r, dict) else r.to_dict()


def model_layers(ref: str) -> int:
    """Decoder layer count of a model reference (`layers.num_layers` of its config.json)."""
    path = resolve_model_ref(ref) / "config.json"
    try:
        cfg = json.loads(Path(path).read_text())
    except FileNotFoundError:
        hint = " (run `evomerge zoo build`)" if ref.startswith("zoo:") else ""
        raise CheckpointError(f"{ref}: no config.json at {path}{hint}") from None
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{path}: unreadable config ({err})") from None
    n = num_layers(cfg)
    if n < 1:
        raise CheckpointError(f"{path}: num_hidden_layers missing or invalid")
    return n


def short_names(refs: list[str]) -> list[str]:
    """Short, unique labels for model references: ``zoo:math`` -> ``math``, a path -> its folder
    name; ``s0``, ``s1``, ... when those would collide."""
    names = [re.sub(r"[^A-Za-z0-9]+", "-", ref.removeprefix("zoo:").rstrip("/").rsplit("/", 1)[-1]).strip("-")
             for ref in refs]
    return names if len(set(names)) == len(names) and all(names) else [f"s{k}" for k in range(len(refs))]

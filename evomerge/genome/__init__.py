"""Search spaces: YAML specs (search_spaces/*.yaml) -> vector <-> recipe maps.

``load_space(spec, models)`` builds the space named by the spec's ``kind``: ``parameter``
(TIES/DARE weights and densities), ``task_vector`` (MAP coefficients), ``dataflow`` (layer
routing) ``hybrid`` (parameter merge, then routing) or ``weights`` (raw weights of a net evolved
from scratch). A new kind is one module with a ``SearchSpace`` subclass plus one line in ``SPACES``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evomerge.config_io import read_mapping, validate
from evomerge.errors import ConfigError
from evomerge.genome.base import Models, Range, SearchSpace
from evomerge.genome.dataflow import DataflowSpace
from evomerge.genome.hybrid import HybridSpace
from evomerge.genome.parameter import ParameterSpace, TaskVectorSpace
from evomerge.genome.weights import WeightsSpace

SPACES: dict[str, type[SearchSpace]] = {space.kind: space for space in (
    ParameterSpace,
    TaskVectorSpace,
    DataflowSpace,
    HybridSpace,
    WeightsSpace,
)}


def read_space_spec(spec: str | Path | dict[str, Any]) -> tuple[dict[str, Any], Path | None, str]:
    """(spec dict, folder for relative paths, name for messages) from a path or an inline dict."""
    if isinstance(spec, dict):
        return spec, None, "search_space"
    path = Path(spec)
    return read_mapping(path), path.resolve().parent, str(path)


def space_kind(data: dict[str, Any], where: str) -> type[SearchSpace]:
    """The registered space class named by a spec's ``kind``; ConfigError naming the known kinds."""
    kind = data.get("kind")
    if kind not in SPACES:
        raise ConfigError(f"{where}: kind: {kind!r} is not one of {', '.join(SPACES)}")
    return SPACES[kind]


def load_space(spec: str | Path | dict[str, Any], models: Models, folder: Path | None = None,
               where: str | None = None) -> SearchSpace:
    """Validate a search-space spec and build it over ``models``; one-line ConfigError."""
    data, file_folder, name = read_space_spec(spec)
    name = where or name
    space = space_kind(data, name)
    return space.from_spec(validate(space.Spec, data, name), models, file_folder or folder)


__all__ = ["Models", "Range", "SPACES", "SearchSpace", "load_space", "read_space_spec", "space_kind"]

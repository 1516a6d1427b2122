"""Search spaces: YAML specs (search_spaces/*.yaml) -> vector <-> recipe maps.

``load_space(spec, models)`` builds the space named by the spec's ``kind``: ``parameter``
(TIES/DARE weights and densities), ``task_vector`` (MAP coefficients), ``dataflow`` (layer
routing) ``hybrid`` (parameter merge, then routing) or ``weights`` (raw weights of a net evolved from scratch).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from evomerge.errors import ConfigError
from evomerge.genome.base import Models, Range, SearchSpace

SPACE_KINDS = ("parameter", "task_vector", "dataflow", "hybrid", "weights")


def read_space_spec(spec: str | Path | dict[str, Any]) -> tuple[dict[str, Any], Path | None, str]:
    """(spec dict, folder for relative paths, name for messages) from a path or an inline dict."""
    if isinstance(spec, dict):
        return spec, None, "search_space"
    from evomerge.recipe import read_yaml

    path = Path(spec)
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at top level")
    return data, path.resolve().parent, str(path)


def load_space(spec: str | Path | dict[str, Any], models: Models, folder: Path | None = None,
               where: str | None = None) -> SearchSpace:
    """Validate a search-space spec and build it over ``models``; one-line ConfigError."""
    from evomerge.digits.space import WeightsSpace, WeightsSpec
    from evomerge.genome.dataflow import DataflowSpace, DataflowSpec
    from evomerge.genome.hybrid import HybridSpace, HybridSpec
    from evomerge.genome.parameter import ParameterSpace, ParameterSpec, TaskVectorSpace, TaskVectorSpec
    from evomerge.recipe import format_validation_error

    data, file_folder, name = read_space_spec(spec)
    folder = file_folder or folder
    name = where or name
    kind = data.get("kind")
    models_of = {"parameter": ParameterSpec, "task_vector": TaskVectorSpec,
                 "dataflow": DataflowSpec, "hybrid": HybridSpec, "weights": WeightsSpec}
    if kind not in models_of:
        raise ConfigError(f"{name}: kind: {kind!r} is not one of {', '.join(SPACE_KINDS)}")
    try:
        parsed = models_of[kind].model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, name)) from None
    if kind == "weights":
        return WeightsSpace(parsed)
    if not models.sources:
        raise ConfigError("models.sources: at least one source model is required")
    if kind == "parameter":
        return ParameterSpace(parsed, models)
    if kind == "task_vector":
        return TaskVectorSpace(parsed, models)
    if kind == "dataflow":
        return DataflowSpace.over_models(parsed, models)
    return HybridSpace(parsed, models, folder)


__all__ = ["Models", "Range", "SearchSpace", "SPACE_KINDS", "load_space", "read_space_spec"]

"""Materialize recipes: streaming to disk (`merge_to_disk`) or in place from resident sources
(`materialize_into`, `materialize_tensors`). Imports torch; `import evomerge` does not.

Imports go one way: leaves (source, reader, writer, plan, resident) -> the parameter path (merge,
materialize) -> the data-flow path (dataflow, which merges inline parameter recipes) -> this
module, the only place that dispatches on the recipe's kind."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch

from evomerge.engine import dataflow
from evomerge.engine.materialize import parameter_tensors, parameters_into
from evomerge.engine.merge import RECIPE_FILE, merge_parameters_to_disk
from evomerge.engine.reader import CheckpointReader
from evomerge.engine.resident import ResidentSources
from evomerge.engine.writer import DEFAULT_SHARD_BYTES
from evomerge.recipe import DataflowRecipe, Recipe

__all__ = ["CheckpointReader", "ResidentSources", "materialize_into", "materialize_tensors", "merge_to_disk"]


def merge_to_disk(recipe: Recipe, out_dir: str | Path, *, force: bool = False, allow_pickle: bool = False,
                  max_shard_bytes: int = DEFAULT_SHARD_BYTES, recipe_file: str = RECIPE_FILE) -> Path:
    """Materialize `recipe` as a complete HF checkpoint in `out_dir` (atomically), with the
    recipe itself in `recipe_file`."""
    write = dataflow.merge_to_disk if isinstance(recipe, DataflowRecipe) else merge_parameters_to_disk
    return write(recipe, out_dir, force=force, allow_pickle=allow_pickle, max_shard_bytes=max_shard_bytes,
                 recipe_file=recipe_file)


def materialize_tensors(recipe: Recipe, sources: ResidentSources, *, clone: bool = False
                        ) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield (name, merged tensor in the output dtype). Unless `clone`, a yielded tensor may be
    a reused buffer, valid until the next one is requested: consume it immediately."""
    if isinstance(recipe, DataflowRecipe):
        return dataflow.materialize_tensors(recipe, sources)
    return parameter_tensors(recipe, sources, clone=clone)


def materialize_into(recipe: Recipe, sources: ResidentSources, model: torch.nn.Module) -> None:
    """Write the recipe's tensors into `model`'s existing parameters (no disk, no new model)."""
    if isinstance(recipe, DataflowRecipe):
        targets = dict(model.state_dict(keep_vars=True))
        with torch.no_grad():
            for name, t in dataflow.materialize_tensors(recipe, sources):
                targets[name].copy_(t)
        return
    parameters_into(recipe, sources, model)

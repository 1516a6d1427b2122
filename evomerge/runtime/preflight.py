"""Checks made before a search starts, so a run that cannot work fails in one line before
anything is written, instead of spending its whole budget on failed evaluations.

For the built-in model backends (hf, vllm): every task file and its data split reads, and the
search's start recipe fits its models (same tensor names and shapes for a parameter merge, the
same hidden shape for a data-flow path), checked on checkpoint headers only. Backends named
``module:Class`` define their own inputs and are left to themselves.
"""

from __future__ import annotations

from typing import Any

from evomerge.errors import ConfigError, EvomergeError
from evomerge.runtime.session import Session

MODEL_BACKENDS = ("hf", "vllm")


def preflight(session: Session) -> None:
    """Raise a one-line EvomergeError for what would make every evaluation fail."""
    spec = session.spec
    if spec.backend not in (*MODEL_BACKENDS, "torch"):
        return
    from evomerge.evaluate.tasks import load_task

    for name in spec.tasks:
        load_task(name).items(spec.split)
    if spec.backend in MODEL_BACKENDS:
        check_sources(session.space.recipe_dict(session.space.x0))


def check_sources(recipe_dict: dict[str, Any]) -> None:
    """The models of ``recipe_dict`` fit together (headers and configs only, no weights read)."""
    from evomerge.recipe import DataflowRecipe, ParameterRecipe, parse_recipe

    recipe = parse_recipe(recipe_dict, "the search's start recipe")
    try:
        if isinstance(recipe, ParameterRecipe):
            _same_tensors(recipe)
        elif isinstance(recipe, DataflowRecipe):
            _same_hidden_shape(recipe)
    except EvomergeError as err:
        raise ConfigError(f"models: {err}") from None


def _same_tensors(recipe: Any) -> None:
    from evomerge.engine.merge import open_models
    from evomerge.engine.plan import check_compatible

    models = open_models(recipe)
    try:
        check_compatible(models)
    finally:
        for _, reader in models:
            reader.close()


def _same_hidden_shape(recipe: Any) -> None:
    from evomerge.engine.dataflow import MUST_MATCH
    from evomerge.engine.reader import CheckpointReader
    from evomerge.errors import CheckpointError
    from evomerge.recipe import resolve_model_ref

    configs = []
    for i, src in enumerate(recipe.sources):
        if src.recipe is not None:
            _same_tensors(src.recipe)
            ref = src.recipe.model_refs()[0]
        else:
            ref = src.model
        reader = CheckpointReader(resolve_model_ref(ref))
        configs.append((f"sources[{i}] ({ref})", reader.config()))
        reader.close()
    first_label, first = configs[recipe.embeddings_from]
    for label, cfg in configs:
        for key in MUST_MATCH:
            if cfg.get(key) != first.get(key):
                raise CheckpointError(f"{label}: config {key} = {cfg.get(key)!r} differs from {first_label}'s "
                                      f"{first.get(key)!r}; data-flow sources must share a shape")

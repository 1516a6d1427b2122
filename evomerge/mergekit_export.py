"""mergekit.yaml for an exported winner, whenever mergekit 0.1.5 can express its merge.

- Parameter recipes: ``to_mergekit`` (the same merge). DARE's default 1/density rescale
  becomes mergekit's own DARE rescale (``rescale: true``: survivors scaled to restore the L1
  norm of the task vector, which is 1/density in expectation); random drops are drawn by each
  tool, so DARE merges agree in distribution, not bit for bit. The file says so.
- Data-flow paths whose hops all have scale 1 and that start and end in the model giving the
  embeddings: ``passthrough`` slices (mergekit takes embeddings from the first slice's model
  and the final norm and head from the last one's). The same tensors as our export.
- Anything else (scaled hops, hybrid paths): no file, and one line saying why.
"""

from __future__ import annotations

from typing import Any

from evomerge.errors import ConfigError
from evomerge.mergekit_config import to_mergekit
from evomerge.ops import get_method
from evomerge.recipe import DataflowRecipe
from evomerge.zoo import resolve_model_ref

HEADER = "# mergekit 0.1.5 config for the same merge (model paths resolved on the exporting machine)\n"


def export_config(recipe: Any) -> tuple[dict[str, Any] | None, str]:
    """(config or None, one line for the model card): what mergekit.yaml holds, or why there is none."""
    try:
        if isinstance(recipe, DataflowRecipe):
            return passthrough_config(recipe), "mergekit.yaml: the same layer path as mergekit `passthrough` slices."
        return _parameter_config(recipe)
    except ConfigError as err:
        return None, f"No mergekit.yaml: {str(err).split(': ', 1)[-1]}"


def _parameter_config(recipe: Any) -> tuple[dict[str, Any], str]:
    spec = get_method(recipe.method)
    rescale_def = spec.param("rescale")
    rescale = recipe.parameters.get("rescale", rescale_def.default if rescale_def else None)
    if spec.sparsify == "random" and rescale == "inverse_density":
        config = to_mergekit(recipe.model_copy(update={"parameters": {**recipe.parameters, "rescale": "l1"}}))
        return config, ("mergekit.yaml: the same DARE merge with mergekit's rescale (restores each task vector's "
                        "L1 norm; 1/density in expectation) and mergekit's own random drops: equal in distribution, "
                        "not bit for bit.")
    note = "mergekit.yaml: the same merge for mergekit 0.1.5"
    if spec.sparsify == "random":
        note += " (DARE's random drops are drawn by each tool: equal in distribution, not bit for bit)"
    return to_mergekit(recipe), note + "."


def passthrough_config(recipe: Any) -> dict[str, Any]:
    """Slices of consecutive layers, one source each; ConfigError when mergekit cannot express the path."""
    if any(s.recipe is not None for s in recipe.sources):
        raise ConfigError("recipe: hybrid paths (an inline parameter merge as a source) have no mergekit equivalent")
    scaled = [k for k, h in enumerate(recipe.layers) if h.scale != 1.0]
    if scaled:
        raise ConfigError(f"layers[{scaled[0]}].scale: mergekit's passthrough cannot scale the hidden state "
                          f"({len(scaled)} scaled hop(s))")
    emb = recipe.embeddings_from
    if recipe.layers[0].source != emb or recipe.layers[-1].source != emb:
        raise ConfigError(f"layers: mergekit takes the embeddings from the first slice's model and the head from "
                          f"the last one's; this path starts or ends outside source {emb}, which gives them")
    paths = [str(resolve_model_ref(s.model)) for s in recipe.sources]
    slices: list[dict[str, Any]] = []
    start = prev = None
    for hop in recipe.layers:
        if prev is not None and hop.source == prev.source and hop.layer == prev.layer + 1:
            prev = hop
            continue
        if prev is not None:
            slices.append(_slice(paths[prev.source], start.layer, prev.layer + 1))
        start = prev = hop
    slices.append(_slice(paths[prev.source], start.layer, prev.layer + 1))
    config: dict[str, Any] = {"merge_method": "passthrough", "slices": slices}
    if recipe.dtype:
        config["dtype"] = recipe.dtype
    return config


def _slice(model: str, a: int, b: int) -> dict[str, Any]:
    return {"sources": [{"model": model, "layer_range": [a, b]}]}

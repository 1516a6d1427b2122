"""Materialize a data-flow recipe: a stack of (source, layer, scale) hops as a plain HF model.

Embeddings, final norm and head (and tokenizer, config) come from ``embeddings_from``; decoder
layer k of the output is layer ``hops[k].layer`` of ``hops[k].source`` renamed to
``model.layers.k``. Scales fold into weights: in a pre-norm transformer every block reads its
input through an RMSNorm, which removes the residual stream's overall size, so multiplying the
hidden state by s before hop k changes only how large later blocks' contributions are relative
to it. Dividing the output projections (``o_proj``, ``down_proj``) of hop k and of every later
hop by s is therefore the same model, exact up to the norms' epsilon (tests/test_dataflow_engine.py
measures it). Inline parameter recipes (hybrid search) are merged in memory first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from evomerge.engine.files import with_dtype
from evomerge.engine.materialize import parameter_tensors
from evomerge.engine.merge import RECIPE_FILE
from evomerge.engine.reader import CheckpointReader
from evomerge.engine.resident import ResidentModel, ResidentSources
from evomerge.engine.source import TensorSource
from evomerge.engine.writer import DEFAULT_SHARD_BYTES, check_output_dir, write_checkpoint
from evomerge.errors import CheckpointError
from evomerge.layers import split_layer_name
from evomerge.ops.compute_dtype import DTYPES
from evomerge.recipe import DataflowRecipe
from evomerge.zoo import resolve_model_ref

OUTPUT_PROJECTIONS = ("self_attn.o_proj.", "mlp.down_proj.")
MUST_MATCH = ("model_type", "hidden_size", "num_attention_heads", "num_key_value_heads", "head_dim",
              "intermediate_size", "vocab_size", "rms_norm_eps", "hidden_act", "tie_word_embeddings")


class _Source:
    """One data-flow source, indexed by layer."""

    def __init__(self, model: TensorSource) -> None:
        self.model = model
        self.get: Callable[[str], torch.Tensor] = model.get
        self.config: dict = model.config()
        self.folder: Path = model.folder
        self.layers: dict[int, list[tuple[str, str]]] = {}     # layer -> [(name, suffix)]
        self.outside: list[str] = []
        split = {n: split_layer_name(n) for n in model.names}
        for n, parts in split.items():
            if parts:
                self.layers.setdefault(parts[1], []).append((n, parts[2]))
            else:
                self.outside.append(n)
        self.prefix = next((parts[0] for parts in split.values() if parts), "model.layers.")


def _open_sources(recipe: DataflowRecipe, resident: ResidentSources | None, allow_pickle: bool = False) -> list[_Source]:
    """Model sources from resident memory (or lazily from disk); parameter recipes merged now."""
    needed = [r for s in recipe.sources if s.recipe is not None for r in s.recipe.model_refs()]
    if resident is None and needed:
        resident = ResidentSources.load(needed, allow_pickle=allow_pickle)
    out = []
    for src in recipe.sources:
        if src.recipe is not None:
            tensors = dict(parameter_tensors(src.recipe, resident, clone=True))
            like = resident.model(src.recipe.model_refs()[0])
            out.append(_Source(ResidentModel(like.folder, tensors, like.config())))
            continue
        model = None
        if resident is not None:
            try:
                model = resident.model(src.model)
            except CheckpointError:
                model = None
        out.append(_Source(model or CheckpointReader(resolve_model_ref(src.model), allow_pickle=allow_pickle)))
    return out


def _check(recipe: DataflowRecipe, sources: list[_Source]) -> None:
    ref = sources[recipe.embeddings_from]
    for i, s in enumerate(sources):
        for key in MUST_MATCH:
            if s.config.get(key) != ref.config.get(key):
                raise CheckpointError(f"sources[{i}]: config {key} = {s.config.get(key)!r} differs from the "
                                      f"embeddings source's {ref.config.get(key)!r}; data-flow sources must share a shape")
    for k, hop in enumerate(recipe.layers):
        layer = sources[hop.source].layers.get(hop.layer)
        if layer is None:
            raise CheckpointError(f"layers[{k}]: source {hop.source} has no layer {hop.layer} "
                                  f"(it has {len(sources[hop.source].layers)})")
        if not any(suffix.startswith(OUTPUT_PROJECTIONS) for _, suffix in layer):
            raise CheckpointError(f"layers[{k}]: no o_proj/down_proj tensors; data-flow merging needs a "
                                  f"Llama-style pre-norm model")
        if hop.scale <= 0:
            raise CheckpointError(f"layers[{k}].scale: {hop.scale} must be > 0 to fold into the weights")


def _plan(recipe: DataflowRecipe, sources: list[_Source]) -> list[tuple[str, int, str, float, float]]:
    """(output name, source index, source name, divisor, factor) for every output tensor, in
    order; final norm and head come from `head_from` (default: the embeddings' source)."""
    emb = sources[recipe.embeddings_from]
    head_from = recipe.embeddings_from if recipe.head_from is None else recipe.head_from
    plan = []
    ends = lambda n: "norm" in n or "lm_head" in n  # noqa: E731
    plan += [(n, recipe.embeddings_from, n, 1.0, 1.0) for n in emb.outside if not ends(n)]
    cumulative = 1.0
    for k, hop in enumerate(recipe.layers):
        cumulative *= hop.scale
        src = sources[hop.source]
        for name, suffix in src.layers[hop.layer]:
            div = cumulative if suffix.startswith(OUTPUT_PROJECTIONS) else 1.0
            plan.append((f"{emb.prefix}{k}.{suffix}", hop.source, name, div, hop.factor(name)))
    plan += [(n, head_from, n, 1.0, 1.0) for n in sources[head_from].outside if ends(n)]
    return plan


def _tensors(recipe: DataflowRecipe, sources: list[_Source], plan: list) -> Iterator[tuple[str, torch.Tensor]]:
    out_dtype = DTYPES.get(recipe.dtype or "")
    compute = DTYPES.get(recipe.compute_dtype or "float32")
    with torch.no_grad():
        for out_name, s, name, div, factor in plan:
            t = sources[s].get(name)
            dtype = out_dtype or t.dtype
            if compute != torch.float32:  # a mergekit config's dtype: inputs rounded to it
                t = t.to(compute)
            if factor != 1.0:
                t = t.to(compute) * factor
            if div != 1.0:
                t = t.to(torch.float32) / div
            yield out_name, t.to(dtype)


def output_config(recipe: DataflowRecipe, sources: list[_Source]) -> dict[str, Any]:
    """The embeddings source's config with the path's layer count (and per-layer types)."""
    cfg = dict(sources[recipe.embeddings_from].config)
    cfg["num_hidden_layers"] = len(recipe.layers)
    if isinstance(cfg.get("layer_types"), list):
        cfg["layer_types"] = [sources[h.source].config["layer_types"][h.layer] for h in recipe.layers]
    return with_dtype(cfg, recipe.dtype)


def materialize_tensors(recipe: DataflowRecipe, resident: ResidentSources | None = None) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) of the output checkpoint; ``resident`` are ResidentSources or None (disk)."""
    sources = _open_sources(recipe, resident)
    _check(recipe, sources)
    yield from _tensors(recipe, sources, _plan(recipe, sources))


def build_model(recipe: DataflowRecipe, resident: ResidentSources | None = None, device: str | torch.device = "cpu"):
    """The data-flow model in memory (an HF causal LM with ``len(recipe.layers)`` layers)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    sources = _open_sources(recipe, resident)
    _check(recipe, sources)
    config = AutoConfig.for_model(**output_config(recipe, sources))
    # cloned: the model must never alias the (resident) sources' tensors
    state = {n: t.clone() for n, t in _tensors(recipe, sources, _plan(recipe, sources))}
    with torch.device("meta"):  # no random init: every parameter comes from the sources
        model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(state, strict=False, assign=True)
    for name, module in list(model.named_modules()):
        # non-persistent buffers (RoPE tables) are computed, not stored: rebuild their module
        if name and any(b.is_meta for b in module.buffers(recurse=False)):
            model.set_submodule(name, type(module)(config=model.config))
    model.tie_weights()
    meta = [n for n, p in model.named_parameters() if p.is_meta]
    if meta:
        raise CheckpointError(f"data-flow model: no tensor for {meta[0]}")
    return model.to(device).eval()


def merge_to_disk(recipe: DataflowRecipe, out_dir: str | Path, *, force: bool = False, allow_pickle: bool = False,
                  max_shard_bytes: int = DEFAULT_SHARD_BYTES, recipe_file: str = RECIPE_FILE) -> Path:
    """Write the data-flow model as a complete HF checkpoint (atomically)."""
    out = Path(out_dir)
    check_output_dir(out, force)
    sources = _open_sources(recipe, None, allow_pickle)
    _check(recipe, sources)
    plan = _plan(recipe, sources)
    out_dtype = DTYPES.get(recipe.dtype or "")
    layout = []
    for out_name, s, name, _, _ in plan:
        src = sources[s].model
        layout.append((out_name, tuple(src.shape(name)), out_dtype or src.dtype(name)))
    emb = sources[recipe.embeddings_from]
    return write_checkpoint(out, layout, _tensors(recipe, sources, plan), config=output_config(recipe, sources),
                            config_from=emb.folder, tokenizer_from=emb.folder, files={recipe_file: recipe.to_yaml()},
                            force=force, max_shard_bytes=max_shard_bytes)

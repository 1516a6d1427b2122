"""Runs inside the vLLM worker: resident sources and in-place candidate swaps.

vLLM mixes this class into its worker (``LLM(worker_extension_cls=...)``), so the methods run
where the model lives and reach it as ``self.model_runner``. The driver sends only recipe
dicts through ``collective_rpc``; tensors never cross a process boundary. Each swap streams the
recipe's tensors from ``evomerge.engine.materialize_tensors`` straight into
``model_runner.reload_weights``, which repacks them for the kernels and copies them into the
engine's existing parameter storage (no new engine, no disk round trip).

The engine has a fixed depth. A model with fewer layers (a short data-flow path) is padded with
all-zero blocks: a pre-norm block whose output projections are zero adds nothing to the
residual stream, so it is an exact identity (tests/test_vllm_backend.py checks it bit for bit).
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterator
from typing import Any

import torch

from evomerge.errors import CheckpointError
from evomerge.evaluate.loading import has_nonfinite
from evomerge.layers import split_layer_name


class _Watched:
    """Passes (name, tensor) pairs through, timing their production and noting the first
    non-finite tensor (the engine repacks weights, so they cannot be checked afterwards)."""

    def __init__(self, items: Iterator[tuple[str, torch.Tensor]]) -> None:
        self.items = items
        self.seconds = 0.0
        self.nonfinite: str | None = None

    def __iter__(self) -> "_Watched":
        return self

    def __next__(self) -> tuple[str, torch.Tensor]:
        t0 = time.perf_counter()
        try:
            name, t = next(self.items)
            if self.nonfinite is None and has_nonfinite(t):
                self.nonfinite = name
            return name, t
        finally:
            self.seconds += time.perf_counter() - t0


def too_deep(layers: int, depth: int) -> CheckpointError:
    return CheckpointError(f"layers: the model has at least {layers} layers but the vLLM engine holds {depth}; "
                           f"raise the backend option max_layers")


def pad_to_depth(tensors: Iterator[tuple[str, torch.Tensor]], depth: int) -> Iterator[tuple[str, torch.Tensor]]:
    """The tensors, then all-zero blocks ``n..depth-1`` after a model of ``n`` layers.

    Raises CheckpointError at the first tensor of a block beyond the engine's depth."""
    first_block: list[tuple[str, str, tuple, torch.dtype, torch.device]] = []   # block 0's layout
    n = 0
    for name, t in tensors:
        parts = split_layer_name(name)
        if parts:
            prefix, index, suffix = parts
            n = max(n, index + 1)
            if n > depth:
                raise too_deep(n, depth)
            if index == 0:
                first_block.append((prefix, suffix, tuple(t.shape), t.dtype, t.device))
        yield name, t
    zeros: dict[tuple, torch.Tensor] = {}
    for k in range(n, depth):
        for prefix, suffix, *layout in first_block:
            key = tuple(layout)
            if key not in zeros:
                zeros[key] = torch.zeros(layout[0], dtype=layout[1], device=layout[2])
            yield f"{prefix}{k}.{suffix}", zeros[key]


class _QuietRope(logging.Filter):
    """Drops vLLM's per-reload warning that RoPE loaded no weights: its cos/sin table is
    computed, not stored, and vLLM puts it back unchanged (any other layer still warns)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.getMessage().endswith("Failed to load weights") and "RotaryEmbedding" in record.getMessage())


class EvomergeWorkerExtension:
    """Methods vLLM adds to its worker; called from the driver via ``LLM.collective_rpc``."""

    def evomerge_init(self, source_refs: list[str], depth: int, placement: str = "device",
                      base: str | None = None) -> int:
        """Map the sources once, in their stored dtype (shared with every process on the node
        that maps them), for the worker's device; returns how many models."""
        from evomerge.engine import ResidentSources

        reload_log = logging.getLogger("vllm.model_executor.model_loader.reload.layerwise")
        if not any(isinstance(f, _QuietRope) for f in reload_log.filters):
            reload_log.addFilter(_QuietRope())
        device = next(self.model_runner.get_model().parameters()).device
        self._evomerge_sources = ResidentSources.load(source_refs, device=device, placement=placement)
        self._evomerge_depth = depth
        if base:
            self._evomerge_sources.index_magnitudes(base)
        return len(self._evomerge_sources.models)

    def evomerge_swap(self, recipe: dict[str, Any]) -> dict[str, Any]:
        """Materialize a recipe (a plain dict) and reload it into the live model, in place.

        Returns seconds spent materializing and swapping, and the first tensor holding NaN/inf
        (``nonfinite``, None when all are finite). If the recipe fails before the first
        tensor, the engine is untouched; if it fails midway, the engine's structure is restored
        (weights partly replaced) and the error propagates, so the driver must load again."""
        from evomerge.engine import materialize_tensors
        from evomerge.recipe import DataflowRecipe, parse_recipe

        start = time.perf_counter()
        parsed = parse_recipe(recipe, "recipe")
        if isinstance(parsed, DataflowRecipe) and len(parsed.layers) > self._evomerge_depth:
            raise too_deep(len(parsed.layers), self._evomerge_depth)
        # clone: reload buffers a layer's tensors until the layer is complete, so the engine's
        # reused scratch buffers must not be handed over
        timed = _Watched(pad_to_depth(materialize_tensors(parsed, self._evomerge_sources, clone=True),
                                    self._evomerge_depth))
        first = next(timed)  # validation errors surface here, before the engine is touched
        try:
            self.reload_weights(weights_iterator=itertools.chain([first], timed))
            self._evomerge_retie()
        except BaseException:
            self._evomerge_restore()
            raise
        total = time.perf_counter() - start
        return {"materialize": timed.seconds, "swap": total - timed.seconds, "nonfinite": timed.nonfinite}

    def _evomerge_retie(self) -> None:
        """A tied output head (tie_word_embeddings) shares the embeddings' weight, but the CPU
        platform packs its own copy of it for the GEMM kernels when weights are processed; a
        reload skips the head's (tied, absent) tensor, so that copy would keep the engine's
        start weights. Re-tie the head to the reloaded embeddings and process it again."""
        model = self.model_runner.get_model()
        config = self.model_runner.vllm_config.model_config.hf_config
        head = getattr(model, "lm_head", None)
        embed = getattr(getattr(model, "model", None), "embed_tokens", None)
        if not getattr(config, "tie_word_embeddings", False) or head is None or embed is None:
            return
        head.weight = embed.weight
        method = getattr(head, "quant_method", None)
        if method is not None and hasattr(method, "process_weights_after_loading"):
            method.process_weights_after_loading(head)

    def _evomerge_restore(self) -> None:
        """Put every layer back on its device after an interrupted reload (weights undefined)."""
        from vllm.model_executor.model_loader.reload.layerwise import finalize_layerwise_reload

        finalize_layerwise_reload(self.model_runner.get_model(), self.model_runner.vllm_config.model_config)

    def evomerge_rss(self) -> int:
        """Resident memory of the worker process in bytes (the swap-leak test reads it)."""
        import os

        import psutil

        return psutil.Process(os.getpid()).memory_info().rss

"""Getting weights into a backend's model: checkpoint checks, and in-place recipe loading.

``InPlaceLoader`` keeps the sources resident once and allocates one model; each parameter
recipe is then written into that model's tensors by the engine's ``materialize_into`` (no disk,
no new model). Data-flow recipes change the layer count, so they get a model built by
``evomerge.engine.dataflow.build_model``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from evomerge.engine import CheckpointReader, ResidentSources, materialize_into
from evomerge.engine.budget import check_budget, estimate
from evomerge.engine.dataflow import build_model
from evomerge.engine.plan import check_compatible
from evomerge.ops.compute_dtype import DTYPES
from evomerge.engine.resident import check_device
from evomerge.errors import CheckpointError, ConfigError
from evomerge.recipe import DataflowRecipe
from evomerge.zoo import resolve_model_ref


def check_checkpoint(ref: str | Path) -> Path:
    """A model reference (path or zoo:NAME) -> its folder, if it holds config + safetensors."""
    path = resolve_model_ref(str(ref))
    if not (path / "config.json").is_file():
        raise CheckpointError(f"{ref}: no config.json (not a model folder)")
    if not any(path.glob("*.safetensors")):
        pickled = any(path.glob("*.bin"))
        why = "only pickled .bin weights (refused: convert to safetensors)" if pickled else "no .safetensors weights"
        raise CheckpointError(f"{ref}: {why}")
    return path


LOADER_OPTIONS = ("device", "placement", "resident_dtype", "model_dtype", "memory_budget_gb", "base")


def _dtype_option(opts: dict, key: str) -> torch.dtype | None:
    value = opts.get(key)
    if value is None or value == "auto":
        return None
    if value not in DTYPES:
        raise ConfigError(f"options.{key}: {value!r} is not one of auto, {', '.join(DTYPES)}")
    return DTYPES[value]


def stored_dtype(ref: str | Path) -> torch.dtype:
    """The dtype a checkpoint's floating tensors are stored in (the first one's)."""
    reader = CheckpointReader(check_checkpoint(ref))
    dtype = next((reader.dtype(n) for n in reader.names if reader.dtype(n).is_floating_point), torch.float32)
    reader.close()
    return dtype


def preflight(sources: Sequence[str], options: dict) -> None:
    """Everything about a worker's models that can be checked before any work, from the
    checkpoint headers: folders, matching tensor names, shapes and dtypes, the device, and
    whether a worker fits its memory. One-line EvomergeError on the first problem."""
    if not sources:
        raise CheckpointError("sources: an evaluator needs at least one source model")
    readers = [(f"{ref}", CheckpointReader(check_checkpoint(ref))) for ref in sources]
    try:
        check_compatible(readers, same_dtype=_dtype_option(options, "resident_dtype") is None)
    finally:
        for _, r in readers:
            r.close()
    device = check_device(options.get("device", "cpu"))
    model_dtype = _dtype_option(options, "model_dtype") or stored_dtype(sources[0])
    check_budget(estimate(sources, model_dtype, _dtype_option(options, "resident_dtype")), device,
                 options.get("memory_budget_gb"))


class InPlaceLoader:
    """Resident sources + one allocated causal LM that recipes are materialized into.

    Options: `device`; `placement` (device | host: sources stream to the device per tensor);
    `resident_dtype` (auto: as stored; float32 converts on load, at twice a bf16 source's
    memory); `model_dtype` (auto: the sources' stored dtype); `memory_budget_gb`; `base` (the
    experiment's base model: its magnitude histograms are built at start-up)."""

    def __init__(self, sources: Sequence[str], options: dict | None = None) -> None:
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        opts = dict(options or {})
        preflight(sources, opts)
        first = check_checkpoint(sources[0])
        self.device = opts.get("device", "cpu")
        self.sources = ResidentSources.load(list(sources), device=self.device,
                                            dtype=_dtype_option(opts, "resident_dtype"),
                                            placement=opts.get("placement", "device"))
        self.tokenizer = AutoTokenizer.from_pretrained(str(first))
        config = AutoConfig.from_pretrained(str(first))
        dtype = _dtype_option(opts, "model_dtype") or stored_dtype(sources[0])
        with _no_init():  # every weight is overwritten next: skip the random initialization
            self.model = AutoModelForCausalLM.from_config(config, dtype=dtype)
        self.model.tie_weights()  # skipped with the initialization: tied heads share the embeddings again
        self.model = self.model.to(self.device).eval()
        resident = self.sources.model(str(sources[0]))
        with torch.no_grad():  # start as the first source, not as uninitialized memory
            for name, param in self.model.state_dict(keep_vars=True).items():
                if name in resident.tensors:
                    param.copy_(resident.get(name))
        self.index_seconds = self.sources.index_magnitudes(opts["base"]) if opts.get("base") else 0.0

    def load(self, recipe: Any) -> Any:
        """The model holding the recipe's weights (the same object for parameter recipes)."""
        if isinstance(recipe, DataflowRecipe):
            return build_model(recipe, self.sources, device=self.device)
        materialize_into(recipe, self.sources, self.model)
        return self.model


def _no_init():
    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # other transformers versions: initialize (slower, same result)
        import contextlib

        return contextlib.nullcontext()
    return no_init_weights()


_EXPONENT = {torch.float32: (torch.int32, 0x7F800000), torch.bfloat16: (torch.int16, 0x7F80),
             torch.float16: (torch.int16, 0x7C00)}


def has_nonfinite(t: torch.Tensor) -> bool:
    """Whether a float tensor holds NaN or inf, tested on the bit patterns (all exponent bits
    set): one integer pass, fast in every dtype (isfinite on bf16 is not, on CPU)."""
    view = _EXPONENT.get(t.dtype)
    if view is None:
        return t.is_floating_point() and not bool(torch.isfinite(t).all())
    bits = t.view(view[0])
    return bool(((bits & view[1]) == view[1]).any())


def nonfinite_parameter(model: Any) -> str | None:
    """The name of the first parameter holding NaN or inf, or None."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if has_nonfinite(p):
                return name
    return None

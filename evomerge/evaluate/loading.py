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

from evomerge.errors import CheckpointError


def check_checkpoint(ref: str | Path) -> Path:
    """A model reference (path or zoo:NAME) -> its folder, if it holds config + safetensors."""
    from evomerge.recipe import resolve_model_ref

    path = resolve_model_ref(str(ref))
    if not (path / "config.json").is_file():
        raise CheckpointError(f"{ref}: no config.json (not a model folder)")
    if not any(path.glob("*.safetensors")):
        pickled = any(path.glob("*.bin"))
        why = "only pickled .bin weights (refused: convert to safetensors)" if pickled else "no .safetensors weights"
        raise CheckpointError(f"{ref}: {why}")
    return path


class InPlaceLoader:
    """Resident sources + one allocated causal LM that recipes are materialized into."""

    def __init__(self, sources: Sequence[str], device: str = "cpu") -> None:
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        from evomerge.engine import ResidentSources

        if not sources:
            raise CheckpointError("sources: an evaluator needs at least one source model")
        first = check_checkpoint(sources[0])
        for ref in sources[1:]:
            check_checkpoint(ref)
        self.device = device
        self.sources = ResidentSources.load(list(sources), device=device, dtype=torch.float32)
        self.tokenizer = AutoTokenizer.from_pretrained(str(first))
        config = AutoConfig.from_pretrained(str(first))
        self.model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).to(device).eval()
        resident = self.sources.model(str(sources[0]))
        with torch.no_grad():  # start as the first source, not as random weights
            for name, param in self.model.state_dict(keep_vars=True).items():
                if name in resident.tensors:
                    param.copy_(resident.get(name))

    def load(self, recipe: Any) -> Any:
        """The model holding the recipe's weights (the same object for parameter recipes)."""
        from evomerge.engine import materialize_into
        from evomerge.recipe import DataflowRecipe

        if isinstance(recipe, DataflowRecipe):
            from evomerge.engine.dataflow import build_model

            return build_model(recipe, self.sources, device=self.device)
        materialize_into(recipe, self.sources, self.model)
        return self.model


def nonfinite_parameter(model: Any) -> str | None:
    """The name of the first parameter holding NaN or inf, or None."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not torch.isfinite(p).all():
                return name
    return None

"""Plain torch backend for small from-scratch networks (e.g. evomerge.digits' classifiers).

A from-scratch net has no tokenizer, so it answers only ``classify``; the language-model
methods raise a one-line error.
"""

from __future__ import annotations

from typing import Any

import torch

from evomerge.errors import ConfigError
from evomerge.evaluate.backend import Backend
from evomerge.evaluate.requests import ClassificationRequest


class TorchBackend(Backend):
    """Wraps an ``nn.Module`` that maps a [batch, features] tensor to class logits (a
    ``Classifier``; it is built on one network, so it scores no merge candidates)."""

    def __init__(self, model: torch.nn.Module, batch_size: int = 1024) -> None:
        self.model = model.eval()
        self.batch_size = batch_size

    @torch.inference_mode()
    def classify(self, requests: list[ClassificationRequest]) -> list[list[float]]:
        out: list[list[float]] = []
        for start in range(0, len(requests), self.batch_size):
            x = torch.tensor([r.features for r in requests[start:start + self.batch_size]], dtype=torch.float32)
            out.extend(torch.log_softmax(self.model(x), dim=-1).tolist())
        return out

    def _no_text(self, *_args: Any) -> Any:
        raise ConfigError("backend torch: from-scratch nets have no tokenizer; use a classify task (e.g. digits)")

    loglikelihood = loglikelihood_rolling = generate_until = _no_text

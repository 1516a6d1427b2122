"""Plain torch backend for small from-scratch networks (the digits classifiers).

A from-scratch net has no tokenizer, so it answers only ``classify``; the language-model
methods raise a one-line error. ``DigitsMLP`` mirrors ``digits_net.DigitsTask`` (64 -> hidden,
tanh -> 10) and loads its flat weight vectors, so both searchers' nets score the same here.
"""

from __future__ import annotations

from typing import Any

import torch

from evomerge.errors import ConfigError
from evomerge.evaluate.backend import Backend
from evomerge.evaluate.requests import ClassificationRequest


class DigitsMLP(torch.nn.Module):
    """64 -> hidden (tanh) -> 10."""

    def __init__(self, hidden: int = 10) -> None:
        super().__init__()
        self.fc1 = torch.nn.Linear(64, hidden)
        self.fc2 = torch.nn.Linear(hidden, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.tanh(self.fc1(x)))

    @classmethod
    def from_flat(cls, w: Any, hidden: int = 10) -> "DigitsMLP":
        """Load DigitsTask's flat vector (w1 [64,h], b1, w2 [h,10], b2; x @ w layout)."""
        net, w = cls(hidden), torch.as_tensor(w, dtype=torch.float32)
        sizes = [64 * hidden, hidden, hidden * 10, 10]
        w1, b1, w2, b2 = torch.split(w, sizes)
        with torch.no_grad():
            net.fc1.weight.copy_(w1.view(64, hidden).T)
            net.fc1.bias.copy_(b1)
            net.fc2.weight.copy_(w2.view(hidden, 10).T)
            net.fc2.bias.copy_(b2)
        return net


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

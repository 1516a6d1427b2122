"""The digits MLP as a torch module, loaded from the flat vector of ``net`` (same numbers)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from evomerge.digits.net import N_CLASSES, N_FEATURES, n_weights, unflatten


class DigitsMLP(torch.nn.Module):
    """64 -> hidden (tanh) -> 10."""

    def __init__(self, hidden: int = 10) -> None:
        super().__init__()
        self.fc1 = torch.nn.Linear(N_FEATURES, hidden)
        self.fc2 = torch.nn.Linear(hidden, N_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.tanh(self.fc1(x)))

    @classmethod
    def from_flat(cls, w: Any, hidden: int = 10) -> "DigitsMLP":
        """Load the flat vector (``x @ w`` layout; torch's Linear holds the transpose)."""
        flat = np.asarray(w, dtype=np.float32).reshape(-1)
        if flat.size != n_weights(hidden):
            raise ValueError(f"digits_mlp (hidden {hidden}): {flat.size} weights, the net has {n_weights(hidden)}")
        w1, b1, w2, b2 = (torch.from_numpy(np.ascontiguousarray(p)) for p in unflatten(flat, hidden))
        net = cls(hidden)
        with torch.no_grad():
            net.fc1.weight.copy_(w1.T)
            net.fc1.bias.copy_(b1)
            net.fc2.weight.copy_(w2.T)
            net.fc2.bias.copy_(b2)
        return net

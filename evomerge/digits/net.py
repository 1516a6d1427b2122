"""The digits MLP (64 -> hidden, tanh -> 10) as one flat weight vector: M2N2's from-scratch genome.

The layout (w1 [64, hidden], b1, w2 [hidden, 10], b2, row-major, ``x @ w``) is defined here
once; the torch module and the search space read it from here. The forward pass is pure numpy
so thousands of candidates score in seconds on a CPU (limit BLAS to one thread: tiny matmuls
only lose from threading). Per-item scores are 0/1 correctness (what M2N2's fitness sharing
needs); the test split is only for reporting.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evomerge.digits.data import split_arrays

N_FEATURES, N_CLASSES = 64, 10


def layer_shapes(hidden: int) -> list[tuple[int, ...]]:
    """Shapes of w1, b1, w2, b2, in the flat vector's order."""
    return [(N_FEATURES, hidden), (hidden,), (hidden, N_CLASSES), (N_CLASSES,)]


def n_weights(hidden: int) -> int:
    return int(sum(np.prod(s) for s in layer_shapes(hidden)))


def unflatten(w: np.ndarray, hidden: int) -> list[np.ndarray]:
    """w1, b1, w2, b2 as views of the flat vector."""
    parts, at = [], 0
    for shape in layer_shapes(hidden):
        size = int(np.prod(shape))
        parts.append(np.asarray(w[at: at + size]).reshape(shape))
        at += size
    return parts


def init_weights(rng: np.random.Generator, hidden: int) -> np.ndarray:
    """Xavier-style random init: weights ~ N(0, 1/fan_in), zero biases."""
    parts = [rng.normal(0.0, 1.0 / np.sqrt(s[0]), s) if len(s) == 2 else np.zeros(s)
             for s in layer_shapes(hidden)]
    return np.concatenate([p.reshape(-1) for p in parts])


@dataclass
class DigitsTask:
    """Scores flat weight vectors of the MLP on the train or test split (numpy, one thread)."""

    hidden: int = 10

    def __post_init__(self) -> None:
        self.x_train, self.y_train = split_arrays("train")
        self.x_test, self.y_test = split_arrays("test")

    @property
    def dim(self) -> int:
        return n_weights(self.hidden)

    def unflatten(self, w: np.ndarray) -> list[np.ndarray]:
        return unflatten(w, self.hidden)

    def logits(self, w: np.ndarray, x: np.ndarray) -> np.ndarray:
        w1, b1, w2, b2 = self.unflatten(w)
        return np.tanh(x @ w1 + b1) @ w2 + b2

    def item_scores(self, w: np.ndarray, split: str = "train") -> np.ndarray:
        """1.0 where the net classifies the item correctly, else 0.0."""
        x, y = (self.x_train, self.y_train) if split == "train" else (self.x_test, self.y_test)
        return (self.logits(w, x).argmax(axis=1) == y).astype(np.float64)

    def accuracy(self, w: np.ndarray, split: str = "train") -> float:
        return float(self.item_scores(w, split).mean())

    def init_weights(self, rng: np.random.Generator) -> np.ndarray:
        return init_weights(rng, self.hidden)

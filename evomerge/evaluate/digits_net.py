"""A tiny MLP on sklearn's bundled digits, as a flat weight vector: M2N2's from-scratch testbed.

The paper evolved small MNIST classifiers from scratch; sklearn's 8×8 digits (1797 images,
bundled, no download) are a faithful small stand-in. The net is pure numpy so thousands of
candidates score in seconds on a CPU (limit BLAS to one thread: tiny matmuls only lose from
threading). Per-item scores are 0/1 correctness on the training split (what M2N2's fitness
sharing needs); the test split is only for reporting. Splits are those of ``digits.py``
(the ``fitness/digits.yaml`` task), so numbers compare with ``evomerge run`` on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evomerge.evaluate.digits import N_TEST, N_VALIDATION, SPLIT_SEED


@dataclass
class DigitsTask:
    """64 → hidden (tanh) → 10 softmax MLP; the genome is all weights and biases, flattened."""

    hidden: int = 10

    def __post_init__(self) -> None:
        from sklearn.datasets import load_digits

        data = load_digits()
        x = (data.data / 16.0).astype(np.float64)
        order = np.random.default_rng(SPLIT_SEED).permutation(len(x))
        test, train = order[:N_TEST], order[N_TEST + N_VALIDATION:]
        self.x_train, self.y_train = x[train], data.target[train]
        self.x_test, self.y_test = x[test], data.target[test]
        self.shapes = [(64, self.hidden), (self.hidden,), (self.hidden, 10), (10,)]

    @property
    def dim(self) -> int:
        return int(sum(np.prod(s) for s in self.shapes))

    def unflatten(self, w: np.ndarray) -> list[np.ndarray]:
        parts, at = [], 0
        for shape in self.shapes:
            size = int(np.prod(shape))
            parts.append(np.asarray(w[at: at + size]).reshape(shape))
            at += size
        return parts

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
        """Xavier-style random init (weights ~ N(0, 1/fan_in), zero biases)."""
        parts = [rng.normal(0.0, 1.0 / np.sqrt(s[0]), s) if len(s) == 2 else np.zeros(s)
                 for s in self.shapes]
        return np.concatenate([p.reshape(-1) for p in parts])

"""sklearn's bundled 8x8 digits (1797 images, no download) with fixed seeded splits.

A seeded permutation (seed 0): the first 597 images are test, the next 300 validation, the
remaining 900 train. Pixels are scaled to [0, 1].
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from evomerge.errors import ConfigError

N_TEST, N_VALIDATION, SPLIT_SEED = 597, 300, 0
SPLITS = ("train", "validation", "test")


@lru_cache(maxsize=1)
def _arrays() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.data / 16.0).astype(np.float64)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(x))
    parts = {"test": order[:N_TEST], "validation": order[N_TEST:N_TEST + N_VALIDATION],
             "train": order[N_TEST + N_VALIDATION:]}
    return {split: (x[idx], data.target[idx]) for split, idx in parts.items()}


def split_arrays(split: str) -> tuple[np.ndarray, np.ndarray]:
    """(features [n, 64] in [0, 1], labels [n]) of one split."""
    if split not in SPLITS:
        raise ConfigError(f"split: {split!r} is not one of {', '.join(SPLITS)}")
    return _arrays()[split]


def digits_items(source: str, split: str) -> list[dict[str, Any]]:
    """Items of ``sklearn:digits``: {"features": 64 floats in [0, 1], "label": 0..9}."""
    if source != "sklearn:digits":
        raise ConfigError(f"data: {source!r}: only sklearn:digits is bundled")
    x, y = split_arrays(split)
    return [{"features": [float(v) for v in row], "label": int(label)} for row, label in zip(x, y)]

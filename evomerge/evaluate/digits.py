"""sklearn's bundled 8x8 digits as task items, with fixed seeded splits (no download).

The test split is the same 597 images as ``digits_net.DigitsTask`` (permutation seed 0);
the next 300 are validation, the remaining 900 train.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from evomerge.errors import ConfigError

N_TEST, N_VALIDATION, SPLIT_SEED = 597, 300, 0


@lru_cache(maxsize=1)
def _splits() -> dict[str, list[dict[str, Any]]]:
    import numpy as np
    from sklearn.datasets import load_digits

    data = load_digits()
    x = data.data / 16.0
    order = np.random.default_rng(SPLIT_SEED).permutation(len(x))
    parts = {"test": order[:N_TEST], "validation": order[N_TEST:N_TEST + N_VALIDATION],
             "train": order[N_TEST + N_VALIDATION:]}
    return {split: [{"features": [float(v) for v in x[i]], "label": int(data.target[i])} for i in idx]
            for split, idx in parts.items()}


def digits_items(source: str, split: str) -> list[dict[str, Any]]:
    """Items of ``sklearn:digits``: {"features": 64 floats in [0, 1], "label": 0..9}."""
    if source != "sklearn:digits":
        raise ConfigError(f"data: {source!r}: only sklearn:digits is bundled")
    return _splits()[split]

"""What the zoo trains: each model's parent, data mixture and optimizer schedule."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Schedule:
    """Optimizer schedule of one training stage (AdamW, warm-up, cosine to final_lr_frac)."""

    steps: int
    lr: float
    warmup: int = 50
    batch: int = 16
    final_lr_frac: float = 0.02


# name -> (parent, mixture in zoo.mixes, schedule); the base is trained from scratch.
STAGES: dict[str, tuple[str | None, str, Schedule]] = {
    "base": (None, "base", Schedule(steps=2000, lr=3e-3, warmup=100)),
    "math": ("base", "math", Schedule(steps=800, lr=1e-3, warmup=50)),
    "words": ("base", "words", Schedule(steps=200, lr=3e-4, warmup=30)),
    "reverse": ("base", "reverse", Schedule(steps=800, lr=2e-3, warmup=30)),
    "count": ("base", "count", Schedule(steps=600, lr=2e-3, warmup=30)),
}
MODELS = tuple(STAGES)

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
    train_top: int | None = None  # only the last N blocks, final norm and head train (None: all)


# name -> (parent, mixture in zoo.mixes, schedule); the base is trained from scratch.
STAGES: dict[str, tuple[str | None, str, Schedule]] = {
    "base": (None, "base", Schedule(steps=2000, lr=3e-3, warmup=100)),
    "math": ("base", "math", Schedule(steps=800, lr=1e-3, warmup=50)),
    "words": ("base", "words", Schedule(steps=200, lr=3e-4, warmup=30)),
    # the words skill confined to the top: blocks 0-2 and embeddings stay the base's, so a data-flow
    # path can run math's blocks 0-2 and then this block 3 and head (docs/ZOO.md, "Routing")
    "words_top": ("base", "words", Schedule(steps=300, lr=1e-3, warmup=30, train_top=1)),
    "reverse": ("base", "reverse", Schedule(steps=800, lr=2e-3, warmup=30)),
    "count": ("base", "count", Schedule(steps=600, lr=2e-3, warmup=30)),
    # the words skill trained on top of math: its 4 blocks, norm and head learn to read math's last
    # block (math's embeddings and blocks frozen below them), so the 8-block data-flow path
    # math 0-3 -> words_stack 0-3 composes the two; no 4-block merge can (docs/ZOO.md, "Stacked member")
    "words_stack": ("base", "words", Schedule(steps=300, lr=1e-3, warmup=30)),
}
MODELS = tuple(STAGES)
# stage -> the model whose embeddings and blocks run (frozen) below it while it trains
STACKED_ON: dict[str, str] = {"words_stack": "math"}

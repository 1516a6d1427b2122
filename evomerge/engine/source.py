"""What the engine reads a model through: tensors by name, with their shapes, dtypes and the
model's config and folder. `CheckpointReader` (from disk) and `ResidentModel` (in memory:
resident sources, or an inline recipe merged first) implement it."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import torch


class TensorSource(Protocol):
    @property
    def names(self) -> list[str]: ...
    @property
    def folder(self) -> Path: ...
    def shape(self, name: str) -> tuple[int, ...]: ...
    def dtype(self, name: str) -> torch.dtype: ...
    def get(self, name: str) -> torch.Tensor: ...
    def config(self) -> dict: ...

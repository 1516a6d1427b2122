"""Reusable scratch buffers: a search worker merges hundreds of candidates, so the tensor
functions draw their temporaries from here instead of allocating per call."""

from __future__ import annotations

import math

import torch


class Workspace:
    """Flat buffers keyed by (slot, device, dtype), grown on demand and viewed to any shape."""

    def __init__(self) -> None:
        self._bufs: dict[tuple, torch.Tensor] = {}

    def buf(self, slot: str, shape: torch.Size | tuple[int, ...], device: torch.device | str,
            dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """An uninitialized tensor of `shape`; valid until the same slot is asked for again."""
        n = math.prod(shape)
        key = (slot, str(device), dtype)
        b = self._bufs.get(key)
        if b is None or b.numel() < n:
            self._bufs.pop(key, None)  # free the smaller one before growing
            b = torch.empty(n, dtype=dtype, device=device)
            self._bufs[key] = b
        return b[:n].view(shape)

    def clear(self) -> None:
        self._bufs.clear()

    @property
    def nbytes(self) -> int:
        return sum(b.numel() * b.element_size() for b in self._bufs.values())

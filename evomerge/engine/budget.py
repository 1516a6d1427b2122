"""What a worker's memory holds, estimated from the safetensors headers before any work:
resident sources (shared by a node's workers when they stay in host memory), one candidate
model, one tensor's float32 scratch and the kept magnitude histograms."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from evomerge.engine.resident import resident_bytes
from evomerge.errors import ConfigError

HISTOGRAM_BYTES = 4 << 16  # one cumulative top-16-bit histogram (uint32) per tensor and source
GB = 1e9


@dataclass(frozen=True)
class WorkerMemory:
    sources: int        # resident sources, in their resident dtype
    model: int          # the candidate model
    scratch: int        # float32 buffers for one tensor, and the histograms
    parameters: int     # parameters of one model

    @property
    def total(self) -> int:
        return self.sources + self.model + self.scratch

    def describe(self) -> str:
        return (f"sources {self.sources / GB:.2f} GB + model {self.model / GB:.2f} GB + scratch "
                f"{self.scratch / GB:.2f} GB = {self.total / GB:.2f} GB")


def device_memory(device: torch.device) -> int:
    """Bytes of memory the device has in all (RAM for the CPU)."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    import psutil

    return psutil.virtual_memory().total


def estimate(refs: Sequence[str], model_dtype: torch.dtype, resident_dtype: torch.dtype | None) -> WorkerMemory:
    """The memory one worker needs for `refs` (base and sources, distinct files counted once)
    and a candidate model in `model_dtype`."""
    sources, params, largest = resident_bytes(refs, resident_dtype)
    k = len(set(refs))
    scratch = largest * 4 * (k + 2) + HISTOGRAM_BYTES * k * 512  # a generous count of big tensors
    return WorkerMemory(sources, params * torch.empty((), dtype=model_dtype).element_size(), scratch, params)


def check_budget(need: WorkerMemory, device: torch.device, budget_gb: float | None) -> None:
    """One line, before any work, when the worker cannot fit its device's memory or the
    stated `memory_budget_gb`."""
    limit = budget_gb * GB if budget_gb is not None else device_memory(device)
    what = f"memory_budget_gb {budget_gb:g}" if budget_gb is not None else f"the {device.type} memory ({limit / GB:.1f} GB)"
    if need.total > limit:
        raise ConfigError(f"options.memory_budget_gb: a worker needs {need.describe()}, more than {what}; "
                          "use placement: host (GPU), fewer or smaller sources, or a larger budget")

"""Source models held once per node for materializing many candidates in place.

Sources stay in their stored dtype (bf16 sources cost 2 bytes per parameter) as views of their
files' pages (`CheckpointReader.map`): every worker on a node maps the same files, so the node
holds one copy of the sources however many workers it runs, and the kernel may drop and
reread clean pages under memory pressure instead of swapping. Merge arithmetic reads them in
place (fused kernels) and runs in float32 one tensor at a time; only the candidate model and a
tensor's worth of scratch belong to each worker. `dtype=float32` converts on load instead
(private memory, 4 bytes per parameter and source) for devices or kernels that want it.

Placement: "device" copies the sources to the worker's device once; "host" keeps them in host
memory and streams each tensor's inputs to the device as the merge reaches it (for GPUs that
cannot hold K + 1 models), the next tensor's copy overlapping this one's arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import torch

from evomerge.engine.reader import CheckpointReader
from evomerge.errors import CheckpointError, ConfigError
from evomerge.ops.thresholds import HistogramCache, TensorMemo, index_magnitudes
from evomerge.ops.workspace import Workspace
from evomerge.zoo import resolve_model_ref

PLACEMENTS = ("device", "host")


def check_device(device: str | torch.device) -> torch.device:
    """The device, if this machine has it (one line otherwise, before any work)."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ConfigError(f"device: {device!r} is not a device ({err})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device: {device} requested but this machine has no CUDA device (use cpu)")
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"device: {device} is not supported (cpu or cuda)")
    return dev


class ResidentModel:
    """One model's tensors in memory (a `source.TensorSource`, as CheckpointReader is)."""

    def __init__(self, path: Path, tensors: dict[str, torch.Tensor], config: dict, reader=None) -> None:
        self.path = path
        self.tensors = tensors
        self._config = config
        self._reader = reader  # keeps the file mappings the tensors view

    @property
    def names(self) -> list[str]:
        return list(self.tensors)

    @property
    def folder(self) -> Path:
        return self.path

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.tensors[name].shape)

    def dtype(self, name: str) -> torch.dtype:
        return self.tensors[name].dtype

    def get(self, name: str) -> torch.Tensor:
        return self.tensors[name]

    def config(self) -> dict:
        return self._config

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors.values())


class ResidentSources:
    """Models by resolved path, the scratch space reused by every merge, and the magnitude
    histograms behind exact TIES / Breadcrumbs thresholds (kept: they depend only on the
    models)."""

    def __init__(self, models: dict[Path, ResidentModel], device: torch.device, placement: str = "device") -> None:
        self.models = models
        self.device = device
        self.placement = placement
        self.workspace = Workspace()
        self.histograms = HistogramCache()
        self.checked: dict[tuple[Path, ...], list[str]] = {}

    @classmethod
    def load(cls, model_refs: Iterable[str], device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
             allow_pickle: bool = False, placement: str = "device") -> ResidentSources:
        """Map every referenced model once (`zoo:NAME` or paths). `dtype` converts floating
        tensors on load (private memory); `placement` "host" keeps them off the device."""
        dev = check_device(device)
        if placement not in PLACEMENTS:
            raise ConfigError(f"placement: {placement!r} is not one of {', '.join(PLACEMENTS)}")
        keep_on = dev if placement == "device" else torch.device("cpu")
        models: dict[Path, ResidentModel] = {}
        for ref in model_refs:
            path = resolve_model_ref(ref).resolve()
            if path in models:
                continue
            reader = CheckpointReader(path, allow_pickle=allow_pickle)
            tensors = {}
            for name in reader.names:
                t = reader.map(name)
                if dtype is not None and t.is_floating_point() and t.dtype != dtype:
                    t = t.to(dtype)
                tensors[name] = t.to(keep_on)
            models[path] = ResidentModel(path, tensors, reader.config(), reader if keep_on.type == "cpu" else None)
        return cls(models, dev, placement)

    def model(self, ref: str) -> ResidentModel:
        path = resolve_model_ref(ref).resolve()
        m = self.models.get(path)
        if m is None:
            raise CheckpointError(f"{ref}: not among the resident sources ({', '.join(map(str, self.models))})")
        return m

    def index_magnitudes(self, base_ref: str) -> float:
        """Build the magnitude histograms of every other resident model against `base_ref`
        (exact TIES / Breadcrumbs thresholds need them; built now, no candidate waits for
        them). Returns the seconds it took."""
        import time

        start = time.perf_counter()
        base = self.model(base_ref)
        others = [m for m in self.models.values() if m is not base]
        if others and self.placement == "device":
            with torch.no_grad():
                for name in base.names:
                    if all(name in m.tensors and m.tensors[name].shape == base.tensors[name].shape for m in others):
                        memo = TensorMemo(self.histograms, [(name, base.path, m.path) for m in others])
                        index_magnitudes(base.tensors[name], [m.tensors[name] for m in others], memo)
        return time.perf_counter() - start

    def getters(self, models: Sequence[ResidentModel], names: Sequence[str]) -> list[Callable[[str], torch.Tensor]]:
        """Per model, name -> the tensor on the merge's device: the resident tensor itself, or
        with host placement a staged copy (valid until the merge moves two tensors on)."""
        if self.placement == "device":
            return [m.get for m in models]
        stream = HostStream(models, names, self.device, self.workspace)
        return [lambda name, i=i: stream.get(i, name) for i in range(len(models))]


class HostStream:
    """Inputs in host memory copied to the device tensor by tensor, in the merge's order.

    Two slots of device buffers: while the merge works on tensor i (slot i % 2), a helper
    thread stages tensor i + 1's inputs through pinned host buffers into the other slot on a
    side CUDA stream. On CPU the staging is a plain copy (the same path, testable here)."""

    def __init__(self, models: Sequence[ResidentModel], names: Sequence[str], device: torch.device,
                 ws: Workspace) -> None:
        self.models, self.names, self.device, self.ws = list(models), list(names), device, ws
        self.index = {n: i for i, n in enumerate(self.names)}
        self.cuda = device.type == "cuda"
        self.side = torch.cuda.Stream(device) if self.cuda else None
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="evomerge-h2d")
        self.pending: dict[int, Future] = {}
        self.ready: dict[int, list[torch.Tensor]] = {}
        self.pins: dict[tuple, torch.Tensor] = {}

    def _pinned(self, key: str, like: torch.Tensor) -> torch.Tensor:
        """A page-locked host buffer shaped like `like` (grown on demand, kept)."""
        n = like.numel()
        buf = self.pins.get((key, like.dtype))
        if buf is None or buf.numel() < n:
            buf = self.pins[(key, like.dtype)] = torch.empty(n, dtype=like.dtype).pin_memory()
        return buf[:n].view(like.shape)

    def _stage(self, i: int, after: torch.cuda.Event | None) -> list[torch.Tensor]:
        name, slot = self.names[i], i % 2
        out = []
        for k, m in enumerate(self.models):
            host = m.get(name)
            dev_buf = self.ws.buf(f"h2d{slot}.{k}", host.shape, self.device, host.dtype)
            if not self.cuda:
                out.append(dev_buf.copy_(host))
                continue
            pinned = self._pinned(f"{slot}.{k}", host)
            pinned.copy_(host)
            with torch.cuda.stream(self.side):
                if after is not None:
                    self.side.wait_event(after)
                dev_buf.copy_(pinned, non_blocking=True)
            out.append(dev_buf)
        if self.cuda:
            self.side.synchronize()  # pinned buffers reusable, device buffers complete
        return out

    def get(self, k: int, name: str) -> torch.Tensor:
        i = self.index[name]
        if i not in self.ready:
            fut = self.pending.pop(i, None)
            self.ready = {i: fut.result() if fut is not None else self._stage(i, None)}
            if i + 1 < len(self.names):  # the next tensor, into the other slot, once this merge's work on it is queued
                after = torch.cuda.current_stream(self.device).record_event() if self.cuda else None
                self.pending = {i + 1: self.pool.submit(self._stage, i + 1, after)}
        return self.ready[i][k]


def resident_bytes(refs: Sequence[str], dtype: torch.dtype | None = None) -> tuple[int, int, int]:
    """(bytes of the distinct models as they will be resident, parameters of one model,
    entries of the largest tensor), from the safetensors headers only."""
    seen, total, params, largest = set(), 0, 0, 0
    for ref in refs:
        path = resolve_model_ref(ref).resolve()
        if path in seen:
            continue
        seen.add(path)
        reader = CheckpointReader(path)
        count = 0
        for n in reader.names:
            numel = math.prod(reader.shape(n))
            dt = dtype if dtype is not None and reader.dtype(n).is_floating_point else reader.dtype(n)
            total += numel * torch.empty((), dtype=dt).element_size()
            largest, count = max(largest, numel), count + numel
        reader.close()
        params = params or count
    return total, params, largest

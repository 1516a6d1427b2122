"""Source models held in memory once per worker, for materializing many candidates in place."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

from evomerge.engine.reader import CheckpointReader
from evomerge.errors import CheckpointError
from evomerge.ops.workspace import Workspace
from evomerge.recipe import resolve_model_ref


class ResidentModel:
    """One model's tensors in memory (same read interface as CheckpointReader)."""

    def __init__(self, path: Path, tensors: dict[str, torch.Tensor], config: dict) -> None:
        self.path = path
        self.tensors = tensors
        self._config = config

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


class ResidentSources:
    """Models by resolved path, on one device, plus the scratch space reused by every merge."""

    def __init__(self, models: dict[Path, ResidentModel], device: torch.device) -> None:
        self.models = models
        self.device = device
        self.workspace = Workspace()
        self.checked: dict[tuple[Path, ...], list[str]] = {}
        self.cache_stacks = True
        self._stacks: dict[tuple, dict[str, torch.Tensor]] = {}

    @classmethod
    def load(cls, model_refs: Iterable[str], device: str | torch.device = "cpu",
             dtype: torch.dtype | None = None, allow_pickle: bool = False) -> ResidentSources:
        """Read every referenced model once (`zoo:NAME` or paths); `dtype` converts on load
        (float32 avoids a conversion on every merge at twice the memory of bf16)."""
        device = torch.device(device)
        models: dict[Path, ResidentModel] = {}
        for ref in model_refs:
            path = resolve_model_ref(ref).resolve()
            if path in models:
                continue
            reader = CheckpointReader(path, allow_pickle=allow_pickle)
            tensors = {}
            for name in reader.names:
                t = reader.get(name)
                if dtype is not None and t.is_floating_point():
                    t = t.to(dtype)
                tensors[name] = t.to(device)
            models[path] = ResidentModel(path, tensors, reader.config())
            reader.close()
        return cls(models, device)

    def stacks(self, kind: str, base: ResidentModel | None, models: list[ResidentModel]):
        """A name -> (stacked float32 inputs [K, *shape], aux dict) lookup, built on first use
        and kept: task vectors (kind "deltas") or the sources themselves ("sources"); aux holds
        the sorted magnitudes behind TIES / Breadcrumbs thresholds. Costs K float32 copies of
        the model (twice for TIES / Breadcrumbs); set `cache_stacks = False` to trade speed
        for memory."""
        from evomerge.ops.linear import stack_sources
        from evomerge.ops.task_vector import task_vectors

        key = (kind, base.path if base else None, tuple(m.path for m in models))
        cache = self._stacks.setdefault(key, {})

        def get(name: str) -> tuple[torch.Tensor, dict]:
            st = cache.get(name)
            if st is None:
                tensors = [m.tensors[name] for m in models]
                if kind == "deltas":
                    b = base.tensors[name]
                    st = task_vectors(b if b.dtype == torch.float32 else b.float(), tensors, Workspace())
                else:
                    st = stack_sources(tensors, Workspace())
                st = cache[name] = (st, {})
            return st

        return get

    def model(self, ref: str) -> ResidentModel:
        path = resolve_model_ref(ref).resolve()
        m = self.models.get(path)
        if m is None:
            raise CheckpointError(f"{ref}: not among the resident sources ({', '.join(map(str, self.models))})")
        return m

"""The backend interface every scorer talks to, and the one registry of implementations.

A language-model backend answers whole batches (so it can sort and pad them itself), as
lm-evaluation-harness's models do. ``from_spec`` builds one for an Evaluator (resident sources
and a model); ``load(recipe)`` puts a candidate's weights in place (an in-place tensor copy for
``hf``, a weight reload inside the engine for ``vllm``). A backend that implements no
``from_spec`` cannot score merge candidates, and an experiment naming it is refused before the
run starts. Registry entries are strings, so ``import evomerge.evaluate`` never imports torch,
transformers or vllm.

Adding a backend: one module with a ``Backend`` subclass, one line in ``BACKENDS``.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Protocol

from evomerge.errors import ConfigError
from evomerge.evaluate.requests import (
    ClassificationRequest,
    GenerationRequest,
    LoglikelihoodRequest,
    RollingRequest,
)


class Backend(ABC):
    """Scores requests with one model; methods take and return whole batches, in order."""

    @classmethod
    def from_spec(cls, spec: Any) -> "Backend":
        """A backend holding ``spec.sources`` resident, ready to ``load`` candidate recipes."""
        raise ConfigError(f"backend {cls.__name__} cannot score merge candidates (it is built on one "
                          "checkpoint or network only); use hf or vllm")

    @classmethod
    def from_pretrained(cls, path: str | Path, batch_size: int | None = None) -> "Backend":
        """A backend on one saved checkpoint (``evomerge eval``)."""
        raise ConfigError(f"backend {cls.__name__} does not score saved checkpoints (use --backend hf or vllm)")

    @abstractmethod
    def loglikelihood(self, requests: list[LoglikelihoodRequest]) -> list[tuple[float, bool]]:
        """(sum log P(continuation | context), whether greedy decoding yields the continuation)."""

    @abstractmethod
    def loglikelihood_rolling(self, requests: list[RollingRequest]) -> list[tuple[float, int]]:
        """(sum log P(text), number of scored tokens) per text."""

    @abstractmethod
    def generate_until(self, requests: list[GenerationRequest]) -> list[str]:
        """Greedy continuations, cut at the first stop string."""

    def load(self, recipe: Any) -> dict[str, float] | None:
        """Put a candidate recipe's weights in place; may return timings per phase (seconds)."""
        raise ConfigError(f"backend {type(self).__name__} cannot load merge recipes")

    def nonfinite_parameter(self) -> str | None:
        """The first weight tensor of the loaded candidate holding NaN or inf, else None."""
        return None

    def close(self) -> None:
        """Release what the backend holds beyond memory (an engine's processes, files)."""


class Classifier(Protocol):
    """What classify tasks need instead (from-scratch nets on feature vectors: torch backend)."""

    def classify(self, requests: list[ClassificationRequest]) -> list[list[float]]: ...


# name -> "module:Class"
BACKENDS: dict[str, str] = {
    "hf": "evomerge.evaluate.hf_backend:HFBackend",
    "torch": "evomerge.evaluate.torch_backend:TorchBackend",
    "vllm": "evomerge.evaluate.vllm_backend:VLLMBackend",
}


def backend_class(name: str) -> Any:
    """The backend class registered under name (imported only now)."""
    if name not in BACKENDS:
        raise ConfigError(f"backend: unknown backend {name!r} (known: {', '.join(BACKENDS)})")
    module, _, cls = BACKENDS[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def check_scores_candidates(name: str) -> None:
    """One line, before a run starts, if backend `name` cannot score merge candidates."""
    cls = backend_class(name)
    if getattr(cls.from_spec, "__func__", None) is Backend.from_spec.__func__:
        cls.from_spec(None)  # raises its one-line ConfigError

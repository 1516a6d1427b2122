"""The backend interface every scorer talks to, and a lazy registry of implementations.

A backend answers whole batches (so it can sort and pad them itself). ``load(recipe)`` lets
the evaluator put a candidate's weights in place; a backend decides how (in-place tensor copy
for ``hf``, a weight reload inside the engine for ``vllm``). Registry entries are strings, so
``import evomerge.evaluate`` never imports torch, transformers or vllm.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from typing import Any

from evomerge.errors import ConfigError
from evomerge.evaluate.requests import (
    ClassificationRequest,
    GenerationRequest,
    LoglikelihoodRequest,
    RollingRequest,
)


class Backend(ABC):
    """Scores requests with one model; methods take and return whole batches, in order."""

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

    def classify(self, requests: list[ClassificationRequest]) -> list[list[float]]:
        """Per-class log-probabilities (from-scratch classifiers only)."""
        raise ConfigError(f"backend {type(self).__name__} cannot classify feature vectors")


# name -> "module:Class"; each class has from_spec(sources, options) for the Evaluator.
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

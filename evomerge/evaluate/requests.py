"""Typed batch requests of the backend interface (shaped like lm-evaluation-harness's)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LoglikelihoodRequest:
    """log P(continuation | context); the answer is (sum of log-probs, continuation is greedy)."""

    context: str
    continuation: str


@dataclass(frozen=True)
class RollingRequest:
    """log P(text) over all its tokens; the answer is (sum of log-probs, number of tokens)."""

    text: str


@dataclass(frozen=True)
class GenerationRequest:
    """Greedy continuation of context, cut at the first stop string or after max_tokens."""

    context: str
    until: tuple[str, ...] = ()
    max_tokens: int = 16


@dataclass(frozen=True)
class ClassificationRequest:
    """A feature vector for a from-scratch classifier; the answer is per-class log-probs."""

    features: tuple[float, ...]

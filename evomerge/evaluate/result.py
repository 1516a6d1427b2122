"""The outcome of scoring one candidate: what every layer above evaluation consumes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class EvalResult:
    """Scores of one candidate, or the reason it failed.

    ``scores`` holds one aggregate per task (higher is better unless the task says otherwise);
    ``item_scores`` the per-item scores each aggregate came from (M2N2 and MAP need them);
    ``timings`` seconds spent per phase (e.g. ``materialize``, ``swap``, ``score``).
    A failed candidate has ``error`` set (NaN weights, out of memory, timeout, exception, ...)
    and may have empty scores; failures are data, stored like successes.
    """

    candidate_id: int
    scores: dict[str, float] = field(default_factory=dict)
    item_scores: dict[str, list[float]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    worker: str = ""
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EvalResult":
        return cls(**data)

"""The ask/tell contract every searcher follows, and the bookkeeping they share.

A searcher sees vectors and outcomes only (never Ray, torch or the engine). It MAXIMIZES every
objective. Candidates are keyed by an integer id; results may arrive in any order and may be
failures. ``state_dict()`` is explicit, versioned and JSON-serializable (``json.dumps`` works):
restoring it into a fresh searcher and continuing yields exactly the candidates an uninterrupted
run would have produced. Candidates that were asked but not told when the state was taken are
handed out again, first and in their original order, by the next ``ask`` calls (the run loop
lost them in flight).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from evomerge.errors import EvomergeError

STATE_VERSION = 1


@dataclass(frozen=True)
class Candidate:
    """A point to evaluate. ``meta`` is JSON-able: generation, parents, predicted scores, ..."""

    id: int
    x: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    """What the loop tells back for one candidate.

    ``values``: one number per objective, higher is better (negate "minimize" objectives first).
    ``item_scores``: per-item scores, all tasks concatenated in a fixed order (M2N2 needs them).
    ``error``: set when the candidate failed; ``values`` may then be None.
    """

    values: tuple[float, ...] | None = None
    item_scores: np.ndarray | None = None
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None

    @classmethod
    def failure(cls, reason: str) -> "Outcome":
        return cls(values=None, item_scores=None, error=reason)


@dataclass(frozen=True)
class SpaceInfo:
    """What a searcher knows about the space: box bounds, a start point, objectives.

    ``initial`` optionally seeds a population (e.g. the source models' own genomes).
    ``workers``: candidates evaluated at once; generational searchers round their default
    population up to a multiple of it, so no worker idles at a generation's end.
    """

    lower: np.ndarray
    upper: np.ndarray
    x0: np.ndarray | None = None
    initial: tuple[np.ndarray, ...] = ()
    n_objectives: int = 1
    workers: int = 1

    def __post_init__(self) -> None:
        lo = np.asarray(self.lower, dtype=float).reshape(-1)
        hi = np.asarray(self.upper, dtype=float).reshape(-1)
        if lo.size == 0 or lo.shape != hi.shape:
            raise EvomergeError(f"search space: bounds must be two non-empty vectors of equal "
                                f"length, got {lo.size} and {hi.size}")
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.all(lo < hi)):
            raise EvomergeError("search space: every lower bound must be finite and below its upper bound")
        object.__setattr__(self, "lower", lo)
        object.__setattr__(self, "upper", hi)
        x0 = (lo + hi) / 2 if self.x0 is None else self._inside(self.x0, "x0")
        object.__setattr__(self, "x0", x0)
        init = tuple(self._inside(p, f"initial[{i}]") for i, p in enumerate(self.initial))
        object.__setattr__(self, "initial", init)
        if int(self.n_objectives) < 1:
            raise EvomergeError(f"search space: n_objectives must be >= 1, got {self.n_objectives}")

    @property
    def dim(self) -> int:
        return int(self.lower.size)

    def _inside(self, x: Any, what: str) -> np.ndarray:
        v = np.asarray(x, dtype=float).reshape(-1)
        if v.shape != self.lower.shape:
            raise EvomergeError(f"search space: {what} has length {v.size}, expected {self.lower.size}")
        if np.any(v < self.lower) or np.any(v > self.upper):
            raise EvomergeError(f"search space: {what} lies outside the bounds")
        return v


def option(options: dict[str, Any], spec: dict[str, tuple[Callable[[Any], Any], Any]],
           searcher: str) -> dict[str, Any]:
    """Validate ``options`` against ``spec`` (name -> (converter, default)); one-line errors."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(spec))
    if unknown:
        raise EvomergeError(f"searcher.options.{unknown[0]}: unknown option for {searcher} "
                            f"(known: {', '.join(sorted(spec))})")
    out = {}
    for name, (convert, default) in spec.items():
        value = options.get(name, default)
        try:
            out[name] = value if value is None else convert(value)
        except (TypeError, ValueError) as exc:
            raise EvomergeError(f"searcher.options.{name}: {exc}") from None
    return out


def positive_float(v: Any) -> float:
    f = float(v)
    if not (math.isfinite(f) and f > 0):
        raise ValueError(f"must be a positive number, got {v!r}")
    return f


def fraction(v: Any) -> float:
    f = float(v)
    if not 0.0 <= f <= 1.0:
        raise ValueError(f"must lie in [0, 1], got {v!r}")
    return f


def int_at_least(low: int) -> Callable[[Any], int]:
    def convert(v: Any) -> int:
        if isinstance(v, bool) or int(v) != v or int(v) < low:
            raise ValueError(f"must be an integer >= {low}, got {v!r}")
        return int(v)
    return convert


def boolean(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError(f"must be true or false, got {v!r}")
    return v


def rng_state(rng: np.random.Generator) -> dict[str, Any]:
    """The generator's exact state with big integers as strings (portable JSON)."""
    st = rng.bit_generator.state
    return {"bit_generator": st["bit_generator"],
            "state": {k: str(v) for k, v in st["state"].items()},
            "has_uint32": int(st["has_uint32"]), "uinteger": int(st["uinteger"])}


def rng_from_state(d: dict[str, Any]) -> np.random.Generator:
    if d.get("bit_generator") != "PCG64":
        raise EvomergeError(f"searcher state: unsupported RNG {d.get('bit_generator')!r}")
    bg = np.random.PCG64()
    bg.state = {"bit_generator": "PCG64", "state": {k: int(v) for k, v in d["state"].items()},
                "has_uint32": int(d["has_uint32"]), "uinteger": int(d["uinteger"])}
    return np.random.Generator(bg)


def jsonable(obj: Any) -> Any:
    """Numpy scalars/arrays -> Python floats/ints/lists, recursively (for meta and states)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else None
    return obj


class Searcher(ABC):
    """Base class: ids, candidates in flight, outcome checks and the state envelope.

    Subclasses implement ``_propose(n)`` (new points, possibly fewer than n), ``_observe``
    (one told outcome), ``done`` and ``_algo_state`` / ``_load_algo_state``.
    """

    name = "searcher"

    def __init__(self, space: SpaceInfo, seed: int = 0) -> None:
        self.space = space
        self.seed = int(seed)
        self.opts: dict[str, Any] = {}              # validated options (subclasses fill them)
        self.rng = np.random.default_rng(self.seed)
        self._next_id = 0
        self._pending: dict[int, Candidate] = {}   # asked, not told (insertion = ask order)
        self._requeue: list[int] = []              # pending ids to hand out again after a restore

    # -- public contract ------------------------------------------------------------------
    def ask(self, n: int) -> list[Candidate]:
        """Up to ``n`` candidates; fewer (or none) while a generation waits for results."""
        out = [self._pending[i] for i in self._requeue[:n]]
        self._requeue = self._requeue[len(out):]
        if len(out) < n and not self._requeue and not self.done:
            for x, meta in self._propose(n - len(out)):
                x = np.clip(np.asarray(x, dtype=float), self.space.lower, self.space.upper)
                cand = Candidate(self._next_id, x, jsonable(meta))
                self._next_id += 1
                self._pending[cand.id] = cand
                out.append(cand)
        return out

    def tell(self, candidate_id: int, outcome: Outcome) -> None:
        """Report the outcome of an asked candidate; failures never raise."""
        cand = self._pending.pop(int(candidate_id), None)
        if cand is None:
            raise EvomergeError(f"{self.name}: candidate {candidate_id} was not asked or was already told")
        if int(candidate_id) in self._requeue:
            self._requeue.remove(int(candidate_id))
        self._observe(cand, self._checked(outcome))

    @property
    @abstractmethod
    def done(self) -> bool:
        """True when the searcher will propose nothing more."""

    def state_dict(self) -> dict[str, Any]:
        return {"searcher": self.name, "version": STATE_VERSION, "seed": self.seed,
                "options": jsonable(self.opts),
                "next_id": self._next_id, "rng": rng_state(self.rng),
                "pending": [{"id": c.id, "x": c.x.tolist(), "meta": c.meta}
                            for c in self._pending.values()],
                "algo": jsonable(self._algo_state())}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        if d.get("searcher") != self.name or d.get("version") != STATE_VERSION:
            raise EvomergeError(f"searcher state: expected {self.name} v{STATE_VERSION}, got "
                                f"{d.get('searcher')} v{d.get('version')}")
        if d.get("options") != jsonable(self.opts):
            raise EvomergeError(f"searcher state: saved with options {d.get('options')}, "
                                f"now {jsonable(self.opts)}; resume with the same searcher options")
        self.seed = int(d["seed"])
        self._next_id = int(d["next_id"])
        self.rng = rng_from_state(d["rng"])
        self._pending = {int(p["id"]): Candidate(int(p["id"]), np.asarray(p["x"], dtype=float),
                                                 p["meta"]) for p in d["pending"]}
        self._requeue = list(self._pending)
        self._load_algo_state(d["algo"])

    # -- for subclasses --------------------------------------------------------------------
    @abstractmethod
    def _propose(self, n: int) -> list[tuple[np.ndarray, dict[str, Any]]]:
        """New points (and their meta) for at most n candidates."""

    @abstractmethod
    def _observe(self, cand: Candidate, outcome: Outcome) -> None:
        """Learn from one outcome (already checked: values finite or error set)."""

    @abstractmethod
    def _algo_state(self) -> dict[str, Any]: ...

    @abstractmethod
    def _load_algo_state(self, d: dict[str, Any]) -> None: ...

    @property
    def in_flight(self) -> list[int]:
        return list(self._pending)

    def _checked(self, outcome: Outcome) -> Outcome:
        """Non-finite or wrongly sized values become a failure instead of poisoning the model."""
        if outcome.error is not None:
            return Outcome(None, outcome.item_scores, str(outcome.error))
        if outcome.values is None:
            return Outcome.failure("no objective values")
        vals = tuple(float(v) for v in outcome.values)
        if len(vals) != self.space.n_objectives:
            raise EvomergeError(f"{self.name}: got {len(vals)} objective values, expected "
                                f"{self.space.n_objectives}")
        if not all(math.isfinite(v) for v in vals):
            return Outcome.failure(f"non-finite objective value {vals}")
        items = None if outcome.item_scores is None else np.asarray(outcome.item_scores, dtype=float).reshape(-1)
        return Outcome(vals, items, None)

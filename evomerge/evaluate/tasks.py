"""Fitness tasks: ``fitness/NAME.yaml`` + JSONL data with fixed train/validation/test splits.

Kinds: ``generate`` (greedy generation scored by exact match, regex or a custom scorer),
``multiple_choice`` (log-likelihood of each choice; accuracy), ``perplexity`` (rolling
log-likelihood; item score = mean log-prob per token, aggregate = perplexity, lower is better),
``classify`` (feature vectors for from-scratch nets, e.g. sklearn digits; accuracy).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from evomerge.config_io import StrictModel, read_mapping, validate
from evomerge.errors import ConfigError
from evomerge.evaluate.digits import digits_items
from evomerge.evaluate.requests import (
    ClassificationRequest,
    GenerationRequest,
    LoglikelihoodRequest,
    RollingRequest,
)
from evomerge.evaluate.scorers import Scorer, load_scorer

SPLITS = ("train", "validation", "test")


@dataclass
class TaskResult:
    """One task's aggregate score and the per-item scores it came from (higher is better per item)."""

    name: str
    score: float
    item_scores: list[float]
    higher_is_better: bool = True
    metric: str = "accuracy"


@dataclass
class Task:
    """A fitness task read from YAML; ``evaluate(backend, split)`` scores a model on one split."""

    name: str
    kind: str
    data: str
    root: Path
    description: str = ""
    until: tuple[str, ...] = ()
    max_tokens: int = 16
    scorer: Scorer | None = None
    higher_is_better: bool = True
    _cache: dict[str, list[dict[str, Any]]] = field(default_factory=dict, repr=False)

    def items(self, split: str) -> list[dict[str, Any]]:
        """The split's items (cached)."""
        if split not in SPLITS:
            raise ConfigError(f"split: {split!r} is not one of {', '.join(SPLITS)}")
        if split not in self._cache:
            self._cache[split] = _read_items(self, split)
        return self._cache[split]

    def evaluate(self, backend: Any, split: str = "validation", limit: int | slice | None = None) -> TaskResult:
        """Score backend on the split (the first ``limit`` items, or the items of a slice, if given)."""
        items = self.items(split)[limit if isinstance(limit, slice) else slice(limit)]
        if self.kind == "generate":
            outs = backend.generate_until([GenerationRequest(it["prompt"], self.until, self.max_tokens) for it in items])
            scores = [float(self.scorer(o, it)) for o, it in zip(outs, items)]
            return TaskResult(self.name, _mean(scores), scores)
        if self.kind == "multiple_choice":
            reqs = [LoglikelihoodRequest(it["prompt"], f" {c}") for it in items for c in it["choices"]]
            lls = iter(backend.loglikelihood(reqs))
            scores = []
            for it in items:
                ll = [next(lls)[0] for _ in it["choices"]]
                scores.append(float(max(range(len(ll)), key=ll.__getitem__) == int(it["answer"])))
            return TaskResult(self.name, _mean(scores), scores)
        if self.kind == "perplexity":
            rolled = backend.loglikelihood_rolling([RollingRequest(it["text"]) for it in items])
            scores = [lp / max(n, 1) for lp, n in rolled]
            total = sum(n for _, n in rolled)
            ppl = math.exp(-sum(lp for lp, _ in rolled) / max(total, 1))
            return TaskResult(self.name, ppl, scores, higher_is_better=False, metric="perplexity")
        if not hasattr(backend, "classify"):
            raise ConfigError(f"task {self.name}: classify tasks need a classifier backend (torch), "
                              f"not {type(backend).__name__}")
        logps = backend.classify([ClassificationRequest(tuple(it["features"])) for it in items])
        scores = [float(max(range(len(lp)), key=lp.__getitem__) == int(it["label"])) for lp, it in zip(logps, items)]
        return TaskResult(self.name, _mean(scores), scores)


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def _read_items(task: Task, split: str) -> list[dict[str, Any]]:
    if task.data.startswith("sklearn:"):
        return digits_items(task.data, split)
    path = (task.root / task.data / f"{split}.jsonl").resolve()
    if not path.is_file():
        raise ConfigError(f"{task.name}: data file {path} not found")
    items = []
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise ConfigError(f"{path}:{lineno}: not UTF-8 text (byte 0x{raw[err.start]:02x})") from None
            if line.strip():
                try:
                    items.append(json.loads(line))
                except ValueError as err:
                    raise ConfigError(f"{path}:{lineno}: invalid JSON: {err}") from None
    return items


def fitness_dirs() -> list[Path]:
    """Where task names are looked up: $EVOMERGE_FITNESS, ./fitness, then the repo's fitness/."""
    dirs = [Path(p) for p in os.environ.get("EVOMERGE_FITNESS", "").split(os.pathsep) if p]
    dirs += [Path.cwd() / "fitness", Path(__file__).resolve().parents[2] / "fitness"]
    return list(dict.fromkeys(d.resolve() for d in dirs))


def find_task_file(name: str) -> Path:
    """A task name or a path to its YAML -> the YAML path."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ConfigError(f"{name}: task file not found")
        return path
    for folder in fitness_dirs():
        if (folder / f"{name}.yaml").is_file():
            return folder / f"{name}.yaml"
    raise ConfigError(f"task {name!r}: no {name}.yaml in {', '.join(str(d) for d in fitness_dirs())}")


class Generation(StrictModel):
    """How a generate task samples: greedy until a stop string or ``max_tokens`` tokens."""

    until: list[str] = Field(default_factory=list)
    max_tokens: int = Field(default=16, ge=1)


class TaskSpec(StrictModel):
    """A task YAML (``fitness/NAME.yaml``)."""

    name: str | None = None                      # default: the file's stem
    description: str = ""
    kind: Literal["generate", "multiple_choice", "perplexity", "classify"]
    data: str                                    # folder of split JSONL files (next to the YAML) or sklearn:digits
    generation: Generation = Field(default_factory=Generation)
    scorer: str = "exact_match"                  # generate tasks: a built-in scorer or module:function
    regex: str | None = None                     # for the regex scorer


def load_task(name: str) -> Task:
    """Read and validate a task YAML."""
    path = find_task_file(name)
    spec = validate(TaskSpec, read_mapping(path), str(path))
    scorer = load_scorer(spec.scorer, spec.regex, f"{path}: scorer") if spec.kind == "generate" else None
    return Task(
        name=spec.name or path.stem, kind=spec.kind, data=spec.data, root=path.parent,
        description=spec.description, until=tuple(spec.generation.until), max_tokens=spec.generation.max_tokens,
        scorer=scorer, higher_is_better=spec.kind != "perplexity",
    )

"""Experiment configs (experiments/*.yaml): models + search space + fitness + searcher + budget.

Validated with pydantic before anything runs, so a bad file fails with one line naming the
file and field and nothing is written. Relative paths (models, search space, tasks, initial
recipe) resolve against the experiment file's folder; ``resolved()`` gives the self-contained
dict stored with the run, so ``--resume`` needs only the run.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from evomerge.errors import ConfigError

BACKENDS = ("hf", "vllm", "torch")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelsSpec(_Strict):
    base: str | None = None
    sources: list[str] = Field(default_factory=list)   # empty only for nets evolved from scratch


class Objective(_Strict):
    """A weighted mean of task scores; several objectives make a Pareto search."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    tasks: dict[str, float]
    direction: Literal["maximize", "minimize"] = "maximize"

    @field_validator("tasks", mode="before")
    @classmethod
    def _weights(cls, v: Any) -> Any:
        return {t: 1.0 for t in v} if isinstance(v, list) else v

    @field_validator("tasks")
    @classmethod
    def _positive(cls, v: dict[str, float]) -> dict[str, float]:
        if not v:
            raise ValueError("at least one task")
        if any(w <= 0 for w in v.values()):
            raise ValueError("task weights must be > 0")
        return v

    def value(self, scores: dict[str, float]) -> float:
        return sum(w * scores[t] for t, w in self.tasks.items()) / sum(self.tasks.values())


class FitnessSpec(_Strict):
    tasks: list[str] = Field(min_length=1)
    split: str = "validation"
    objectives: list[Objective] = Field(default_factory=list)
    options: dict[str, Any] = Field(default_factory=dict)    # evaluator options (max_items, batch size...)

    @model_validator(mode="after")
    def _objectives(self) -> "FitnessSpec":
        keys = [task_key(t) for t in self.tasks]
        if len(set(keys)) != len(keys):
            raise ValueError("tasks: a task is listed twice")
        if not self.objectives:
            self.objectives = [Objective(name="score", tasks={k: 1.0 for k in keys})]
        names = [o.name for o in self.objectives]
        if len(set(names)) != len(names):
            raise ValueError("objectives: names must be unique")
        for i, obj in enumerate(self.objectives):
            for t in obj.tasks:
                if t not in keys:
                    raise ValueError(f"objectives[{i}].tasks.{t}: not one of the fitness tasks ({', '.join(keys)})")
        return self


class SearcherSpec(_Strict):
    name: str
    options: dict[str, Any] = Field(default_factory=dict)


class Resources(_Strict):
    """Per-worker resources for the Ray pool; ``address`` joins an existing cluster.

    ``custom``: Ray custom resources per worker, one mapping for all or a list cycled over the
    workers (pins workers to the nodes offering them); ``local_cpus``: CPUs of a local Ray
    instance (default: all of this machine's); ``threads``: torch threads per evaluation
    (default: its share of the machine, see evomerge/runtime/threads.py).
    """

    cpus_per_worker: float = Field(default=1.0, gt=0)
    gpus_per_worker: float = Field(default=0.0, ge=0)
    custom: Union[dict[str, float], list[dict[str, float]]] = Field(default_factory=dict)
    local_cpus: int | None = Field(default=None, ge=1)
    address: str | None = None
    timeout_s: float | None = Field(default=None, gt=0)
    threads: int | None = Field(default=None, ge=1)


class RacingSpec(_Strict):
    """Multi-fidelity evaluation (evomerge/runtime/racing.py): score ``first`` items, then up to
    ``eta`` times as many per rung while the candidate's upper bound (``z`` standard errors) can
    still beat the best fully scored candidate."""

    first: int = Field(default=64, ge=1)
    eta: float = Field(default=2.0, gt=1)
    z: float = Field(default=2.0, gt=0)


class Experiment(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    models: ModelsSpec = Field(default_factory=ModelsSpec)
    search_space: Union[str, dict[str, Any]]
    fitness: FitnessSpec
    searcher: SearcherSpec
    budget: int = Field(ge=1)
    seed: int = 0
    backend: str = "hf"
    workers: int = Field(default=1, ge=1)
    resources: Resources = Field(default_factory=Resources)
    store: str | None = None
    initial_recipe: str | None = None
    references: list[str] = Field(default_factory=list)   # parents | untuned | start | recipe file
    racing: RacingSpec | None = None
    _space_where: str = PrivateAttr("search_space")   # the space file, for error messages

    @field_validator("backend")
    @classmethod
    def _backend(cls, v: str) -> str:
        if v not in BACKENDS and not re.fullmatch(r"[\w.]+:\w+", v):
            raise ValueError(f"{v!r} is not one of {', '.join(BACKENDS)} (or module:Class)")
        return v

    @field_validator("references")
    @classmethod
    def _references(cls, v: list[str]) -> list[str]:
        for i, ref in enumerate(v):
            if ref not in ("parents", "untuned", "start") and not ref.endswith((".yaml", ".yml")):
                raise ValueError(f"[{i}]: {ref!r} is not parents, untuned, start or a recipe .yaml file")
        if len(set(v)) != len(v):
            raise ValueError("an entry is listed twice")
        return v

    @model_validator(mode="after")
    def _racing(self) -> "Experiment":
        if self.racing is not None:
            if len(self.fitness.objectives) != 1:
                raise ValueError("racing: needs exactly one objective (it races on the objective's value)")
            if self.searcher.name in ("m2n2", "map"):
                raise ValueError(f"racing: {self.searcher.name} compares candidates item by item and needs every item scored")
        return self

    def objective_directions(self) -> dict[str, str]:
        return {o.name: o.direction for o in self.fitness.objectives}


def task_key(ref: str) -> str:
    """The name a task's scores are keyed by: the file stem for a path, else the name itself."""
    return Path(ref).stem if ref.endswith((".yaml", ".yml")) else ref


def _local(ref: str | None, folder: Path) -> str | None:
    """A relative local path made absolute against ``folder``; zoo refs and names stay."""
    if ref is None or ref.startswith("zoo:") or "://" in ref:
        return ref
    p = Path(ref).expanduser()
    if p.is_absolute():
        return str(p)
    cand = folder / p
    return str(cand.resolve()) if (cand.exists() or "/" in ref or ref.endswith((".yaml", ".yml"))) else ref


def parse_experiment(data: Any, where: str, folder: Path) -> Experiment:
    """Validate a dict as an experiment and absolutize its relative paths; one-line errors."""
    from evomerge.recipe import format_validation_error

    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping at top level, got {type(data).__name__}")
    try:
        exp = Experiment.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, where)) from None
    exp.models.base = _local(exp.models.base, folder)
    exp.models.sources = [_local(m, folder) or m for m in exp.models.sources]
    exp.fitness.tasks = [_local(t, folder) or t for t in exp.fitness.tasks]
    exp.initial_recipe = _local(exp.initial_recipe, folder)
    exp.references = [r if r in ("parents", "untuned", "start") else _local(r, folder) or r for r in exp.references]
    if isinstance(exp.search_space, str):
        from evomerge.genome import read_space_spec

        path = Path(_local(exp.search_space, folder) or exp.search_space)
        spec, space_folder, _ = read_space_spec(path)
        exp.search_space = _absolutize_space(spec, space_folder or folder)
        exp._space_where = str(path)
    else:
        exp._space_where = f"{where}: search_space"
    return exp


def _absolutize_space(spec: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Inline a hybrid space's fixed-recipe path so the stored experiment is self-contained."""
    out = dict(spec)
    if out.get("kind") == "hybrid" and isinstance(out.get("parameter"), str):
        out["parameter"] = _local(out["parameter"], folder)
    return out


def load_experiment(path: str | Path) -> Experiment:
    """Read and validate an experiment YAML (one-line ConfigError naming file and field)."""
    from evomerge.recipe import read_yaml

    path = Path(path)
    return parse_experiment(read_yaml(path), str(path), path.resolve().parent)


def resolved(exp: Experiment) -> dict[str, Any]:
    """The experiment as a plain dict with the search space inlined (stored with the run)."""
    return exp.model_dump(mode="json")

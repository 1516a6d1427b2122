"""Experiment configs (experiments/*.yaml): models + search space + fitness + searcher + budget.

Validated with pydantic before anything runs, so a bad file fails with one line naming the
file and field and nothing is written. Relative paths (models, search space, tasks, initial
recipe) resolve against the experiment file's folder; ``resolved()`` gives the self-contained
dict stored with the run, so ``--resume`` needs only the run.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import Discriminator, Field, PrivateAttr, Tag, field_validator, model_validator

from evomerge.config_io import StrictModel, read_yaml, require_mapping, validate
from evomerge.evaluate.backend import BACKENDS
from evomerge.evaluate.task_refs import LmEvalRef, task_key
from evomerge.genome import read_space_spec, space_kind


class ModelsSpec(StrictModel):
    base: str | None = None
    sources: list[str] = Field(default_factory=list)   # empty only for nets evolved from scratch


class Objective(StrictModel):
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


def _task_kind(v: Any) -> str:
    return "lm_eval_task" if isinstance(v, (dict, LmEvalRef)) else "native_task"


# A mapping is an lm-eval reference, anything else a native name (errors then name one kind only).
TaskRefField = Annotated[Union[Annotated[str, Tag("native_task")], Annotated[LmEvalRef, Tag("lm_eval_task")]],
                         Discriminator(_task_kind)]


# Evaluator options read by the built-in backends, with the type each must have (checked before
# the search: a wrong type would fail every evaluation). Other keys pass to custom backends.
POSITIVE_INT_OPTIONS = ("limit", "batch_size", "max_layers", "max_model_len", "kv_cache_gib")
OPTION_TYPES: dict[str, tuple[type, ...]] = {"device": (str,), "dtype": (str,), "multiprocessing": (bool,),
                                             "placement": (str,), "resident_dtype": (str,), "model_dtype": (str,),
                                             "memory_budget_gb": (int, float),
                                             "engine_args": (dict,), "seed": (int,)}


class FitnessSpec(StrictModel):
    tasks: list[TaskRefField] = Field(min_length=1)   # native names/paths, or {lm_eval: ...}
    split: str = "validation"
    objectives: list[Objective] = Field(default_factory=list)
    options: dict[str, Any] = Field(default_factory=dict)    # evaluator options (limit, batch_size, ...)

    @field_validator("options")
    @classmethod
    def _option_types(cls, v: dict[str, Any]) -> dict[str, Any]:
        for key, val in v.items():
            if key in POSITIVE_INT_OPTIONS and (isinstance(val, bool) or not isinstance(val, int) or val < 1):
                raise ValueError(f"{key}: {val!r} is not a positive integer")
            want = OPTION_TYPES.get(key)
            if want and (not isinstance(val, want) or (bool not in want and isinstance(val, bool))):
                raise ValueError(f"{key}: {val!r} is not a {'/'.join(t.__name__ for t in want)}")
        return v

    @model_validator(mode="after")
    def _objectives(self) -> "FitnessSpec":
        keys = [task_key(t) for t in self.tasks]
        if len(set(keys)) != len(keys):
            raise ValueError("tasks: a task is listed twice")
        for i, t in enumerate(self.tasks):
            if isinstance(t, LmEvalRef) and self.split not in t.splits:
                raise ValueError(f"tasks[{i}].splits: map the search split {self.split!r} to a split of the task")
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


class SearcherSpec(StrictModel):
    name: str
    options: dict[str, Any] = Field(default_factory=dict)


class Resources(StrictModel):
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


class RacingSpec(StrictModel):
    """Multi-fidelity evaluation (evomerge/runtime/racing.py): score ``first`` items, then up to
    ``eta`` times as many per rung while the candidate's upper bound (``z`` standard errors) can
    still beat the best fully scored candidate."""

    first: int = Field(default=64, ge=1)
    eta: float = Field(default=2.0, gt=1)
    z: float = Field(default=2.0, gt=0)


class Budget(StrictModel):
    """When a run stops: after ``evaluations`` candidates, or once the next rung of a race would
    take the items scored past ``items`` (racing only: see evomerge/runtime/loop.py), whichever
    comes first. ``budget: 60`` is ``budget: {evaluations: 60}``."""

    evaluations: int | None = Field(default=None, ge=1, strict=True)
    items: int | None = Field(default=None, ge=1, strict=True)

    @model_validator(mode="after")
    def _one(self) -> "Budget":
        if self.evaluations is None and self.items is None:
            raise ValueError("give evaluations, items or both")
        return self


def _budget_kind(v: Any) -> str:
    return "budget_mapping" if isinstance(v, (dict, Budget)) else "budget_count"


# A mapping is a Budget, anything else a number of evaluations (errors then name one kind only).
BudgetField = Annotated[Union[Annotated[int, Tag("budget_count"), Field(ge=1, strict=True)],
                              Annotated[Budget, Tag("budget_mapping")]], Discriminator(_budget_kind)]


class Experiment(StrictModel):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    models: ModelsSpec = Field(default_factory=ModelsSpec)
    search_space: Union[str, dict[str, Any]]
    fitness: FitnessSpec
    searcher: SearcherSpec
    budget: BudgetField
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
            first = min(self.racing.first, self.fitness.options.get("limit") or self.racing.first)
            need = first * len(self.fitness.tasks)
            if self.limits.items is not None and self.limits.items < need:
                raise ValueError(f"budget.items: {self.limits.items} cannot pay for one first rung "
                                 f"({first} items x {len(self.fitness.tasks)} task(s) = {need})")
        elif self.limits.items is not None:
            raise ValueError("budget.items: counts the items racing scores; without racing every candidate "
                             "scores the whole split, so give budget: N evaluations")
        return self

    @property
    def limits(self) -> Budget:
        """The budget as a mapping (a plain number is a number of evaluations)."""
        return self.budget if isinstance(self.budget, Budget) else Budget(evaluations=self.budget)

    def objective_directions(self) -> dict[str, str]:
        return {o.name: o.direction for o in self.fitness.objectives}


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
    exp = validate(Experiment, require_mapping(data, where), where)
    exp.models.base = _local(exp.models.base, folder)
    exp.models.sources = [_local(m, folder) or m for m in exp.models.sources]
    exp.fitness.tasks = [_local_task(t, folder) for t in exp.fitness.tasks]
    exp.initial_recipe = _local(exp.initial_recipe, folder)
    exp.references = [r if r in ("parents", "untuned", "start") else _local(r, folder) or r for r in exp.references]
    if isinstance(exp.search_space, str):
        path = Path(_local(exp.search_space, folder) or exp.search_space)
        spec, space_folder, _ = read_space_spec(path)
        exp.search_space = space_kind(spec, str(path)).inline_paths(spec, space_folder or folder)
        exp._space_where = str(path)
    else:
        exp._space_where = f"{where}: search_space"
    return exp


def _local_task(ref: str | LmEvalRef, folder: Path) -> str | LmEvalRef:
    """A native task path, or an lm-eval task's include_path, made absolute against ``folder``."""
    if isinstance(ref, LmEvalRef):
        return ref.model_copy(update={"include_path": _local(ref.include_path, folder)})
    return _local(ref, folder) or ref


def load_experiment(path: str | Path) -> Experiment:
    """Read and validate an experiment YAML (one-line ConfigError naming file and field)."""
    path = Path(path)
    return parse_experiment(read_yaml(path), str(path), path.resolve().parent)


def resolved(exp: Experiment) -> dict[str, Any]:
    """The experiment as a plain dict with the search space inlined (stored with the run)."""
    return exp.model_dump(mode="json")

"""Fitness task references: a native task name (``fitness/NAME.yaml``) or an lm-eval task.

An experiment's ``fitness.tasks`` (and ``evomerge eval --task``) list either a string, read as
a native task, or a mapping naming an lm-evaluation-harness task::

    {lm_eval: math_words, include_path: fitness/lm_eval, metric: exact_match,
     splits: {validation: validation, test: test}, num_fewshot: 0}

``splits`` maps evomerge's split names to the task's dataset splits, explicitly: the search
scores ``splits[fitness.split]``, the export holds out ``splits["test"]``; the mapping is part
of the stored experiment, so every run records it. Scores are keyed ``lm_eval:NAME``.
lm-eval itself is imported only by ``task_loading.load_task_ref`` on such a reference.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from evomerge.config_io import StrictModel, parse_yaml, validate
from evomerge.errors import ConfigError

LM_EVAL_PREFIX = "lm_eval:"
EXTRA_HINT = 'pip install "evomerge[lm-eval]"'


class LmEvalRef(StrictModel):
    """An lm-eval task scored as evomerge fitness (see the module docstring)."""

    lm_eval: str = Field(min_length=1)              # the task name (its `task:` field)
    include_path: str | None = None                  # folder of task YAMLs (lm-eval's --include_path)
    metric: str = Field(min_length=1)                # a metric of the task, or "metric,filter"
    splits: dict[Literal["train", "validation", "test"], str]
    num_fewshot: int = Field(default=0, ge=0)

    @field_validator("splits")
    @classmethod
    def _held_out(cls, v: dict[str, str]) -> dict[str, str]:
        missing = [s for s in ("validation", "test") if s not in v]
        if missing:
            raise ValueError(f"map {' and '.join(missing)} to a split of the task "
                             "(validation: what a search scores, test: what the export holds out)")
        if v["test"] == v["validation"]:
            raise ValueError(f"validation and test both map to {v['test']!r}: the held-out split must differ")
        return v

    @property
    def key(self) -> str:
        return LM_EVAL_PREFIX + self.lm_eval


TaskRef = str | LmEvalRef


def parse_task_ref(ref: Any, where: str = "task") -> TaskRef:
    """A string stays a native task reference; a mapping must be a valid ``LmEvalRef``. A string
    starting with ``{`` is read as YAML first (how ``evomerge eval --task`` takes a mapping)."""
    if isinstance(ref, LmEvalRef):
        return ref
    if isinstance(ref, str) and ref.lstrip().startswith("{"):
        ref = parse_yaml(ref, where)
    if isinstance(ref, str):
        return ref
    if not isinstance(ref, dict):
        raise ConfigError(f"{where}: expected a task name or an {{lm_eval: ...}} mapping, got {type(ref).__name__}")
    return validate(LmEvalRef, ref, where)


def task_key(ref: TaskRef | dict) -> str:
    """The name a task's scores are keyed by: ``lm_eval:NAME``, a YAML path's stem, or the name."""
    if isinstance(ref, dict):
        ref = parse_task_ref(ref)
    if isinstance(ref, LmEvalRef):
        return ref.key
    return Path(ref).stem if ref.endswith((".yaml", ".yml")) else ref


def lm_eval_card_note(ref: LmEvalRef | dict, limit: int | None = None) -> str:
    """What an exported model card says about an lm-eval task: the split mapping, and the plain
    ``lm_eval`` command that reproduces the held-out score."""
    ref = parse_task_ref(ref) if isinstance(ref, dict) else ref
    mapping = ", ".join(f"{ours} = dataset split `{theirs}`" for ours, theirs in ref.splits.items())
    include = f" --include_path {ref.include_path}" if ref.include_path else ""
    cap = f" --limit {limit}" if limit else ""
    return (f"`{ref.key}` is lm-eval task `{ref.lm_eval}` ({mapping}; metric `{ref.metric}`, "
            f"{ref.num_fewshot}-shot). Where its YAML's test_split is `{ref.splits['test']}`, `lm_eval --model hf "
            f"--model_args pretrained=THIS_FOLDER{include} --tasks {ref.lm_eval} --num_fewshot {ref.num_fewshot}{cap}` "
            f"gives the test score above.")

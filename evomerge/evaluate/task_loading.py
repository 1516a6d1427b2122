"""A task reference (a native name or path, or an lm-eval mapping) to the task object that
scores it. lm-eval is imported here, and only for an lm-eval reference."""

from __future__ import annotations

from typing import Any

from evomerge.errors import ConfigError
from evomerge.evaluate.lm_eval_tasks import LmEvalTask
from evomerge.evaluate.task_refs import EXTRA_HINT, TaskRef, parse_task_ref
from evomerge.evaluate.tasks import load_task


def load_task_ref(ref: TaskRef | dict, where: str = "task") -> Any:
    """The task object (``name``, ``items(split)``, ``evaluate(backend, split, limit)``)."""
    ref = parse_task_ref(ref, where)
    if isinstance(ref, str):
        return load_task(ref)
    try:
        import lm_eval  # noqa: F401
    except ImportError:
        raise ConfigError(f"{where}: lm-eval task {ref.lm_eval!r} needs lm-evaluation-harness, which is not "
                          f"installed: {EXTRA_HINT}") from None
    return LmEvalTask.load(ref, where)

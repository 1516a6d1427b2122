"""lm-eval tasks as evomerge fitness: the same ``evaluate(backend, split, limit) -> TaskResult``
as native tasks, run by lm-eval's own evaluator over ``BackendLM``.

Everything that can be checked is checked when the task loads, before a run writes anything:
the task exists in ``include_path``, its data is local (nothing is downloaded: a hub dataset
is refused with how to point it at local files), its mapped splits exist, its generation is
greedy, and it produces the metric asked for. Per split, the task is built once with lm-eval's
``test_split`` set to the mapped dataset split (lm-eval scores a task's test split when it has
one); each candidate then only builds requests and scores them. Item scores are lm-eval's
per-sample values of the metric, in document order.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from pathlib import Path
from typing import Any

from evomerge.errors import ConfigError, EvomergeError
from evomerge.evaluate.task_refs import LmEvalRef
from evomerge.evaluate.tasks import TaskResult

LOCAL_BUILDERS = ("json", "csv", "parquet", "text", "arrow")
FEWSHOT_SEED = 1234   # lm-eval's default fewshot_random_seed, so `lm_eval` picks the same shots
POINT_AT_LOCAL = ("point it at local files: in a copy of the task YAML under include_path, set dataset_path: json "
                  "and dataset_kwargs: {data_files: {SPLIT: FILE.jsonl, ...}}")


def _offline_and_quiet() -> None:
    """No hub access from datasets / huggingface_hub; lm-eval's per-task INFO logs off."""
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logger = logging.getLogger("lm_eval")
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.WARNING)


class LmEvalTask:
    """One lm-eval task; ``name`` is its score key (``lm_eval:NAME``)."""

    higher_is_better = True

    def __init__(self, ref: LmEvalRef, entry: Any, index: dict[str, Any], where: str) -> None:
        self.ref, self.name, self.where = ref, ref.key, where
        self._entry, self._index = entry, index
        self._tasks: dict[str, Any] = {}
        self.metric, _, self.filter = ref.metric.partition(",")

    @classmethod
    def load(cls, ref: LmEvalRef, where: str = "task") -> "LmEvalTask":
        """Find the task, check it can run here (see the module docstring), build its search split."""
        _offline_and_quiet()
        from lm_eval.tasks import TaskManager
        from lm_eval.tasks._index import Kind

        include = None
        if ref.include_path is not None:
            include = Path(ref.include_path).expanduser()
            if not include.is_dir():
                raise ConfigError(f"{where}: include_path: {include} is not a folder of lm-eval task YAMLs")
        # lm-eval's built-in index takes ~30 s and every built-in task reads a hub dataset: only
        # without include_path is it searched (to say how to make such a task local).
        manager = TaskManager(include_path=str(include) if include else None, include_defaults=include is None)
        entry = manager.task_index.get(ref.lm_eval)
        if entry is None or entry.kind not in (Kind.TASK, Kind.PY_TASK):
            what = "unknown task" if entry is None else f"a {entry.kind.name.lower()}, not a task"
            place = (f"in include_path {include}" if include else
                     "among lm-eval's built-in tasks (no include_path: give the folder of your task YAMLs)")
            raise ConfigError(f"{where}: lm_eval: {ref.lm_eval!r}: {what} {place}")
        task = cls(ref, entry, manager.task_index, where)
        task._check_config(dict(entry.cfg or {}))
        task.items("validation")
        return task

    # --- checks before anything runs ---------------------------------------------------------

    def _check_config(self, cfg: dict[str, Any]) -> None:
        source = f"{self.where}: lm-eval task {self.ref.lm_eval!r} ({self._entry.yaml_path})"
        if cfg.get("custom_dataset") is None:
            self._check_local_data(cfg, source)
        gen = cfg.get("generation_kwargs") or {}
        if gen.get("do_sample") or float(gen.get("temperature") or 0.0) > 0.0:
            raise ConfigError(f"{source}: generation_kwargs: sampling; evomerge scores greedily "
                              "(set do_sample: false, temperature: 0)")

    def _check_local_data(self, cfg: dict[str, Any], source: str) -> None:
        path = cfg.get("dataset_path")
        if path in LOCAL_BUILDERS:
            files = (cfg.get("dataset_kwargs") or {}).get("data_files")
            if not files:
                raise ConfigError(f"{source}: dataset_path: {path} needs dataset_kwargs.data_files")
            per_split = files if isinstance(files, dict) else {"train": files}
            for split, names in per_split.items():
                for name in [names] if isinstance(names, str) else names:
                    if not Path(name).expanduser().is_file():
                        raise ConfigError(f"{source}: data_files.{split}: {name} not found (relative paths "
                                          f"resolve against the current folder, {Path.cwd()}, as in lm_eval)")
            for ours, theirs in self.ref.splits.items():
                if theirs not in per_split:
                    raise ConfigError(f"{self.where}: splits.{ours}: {theirs!r} is not a split of the task's "
                                      f"data_files ({', '.join(per_split)})")
        elif not (path and Path(str(path)).expanduser().is_dir()):
            raise ConfigError(f"{source}: dataset {path!r} lives on a hub and nothing is downloaded here; "
                              f"{POINT_AT_LOCAL}")

    def _check_metric(self, task: Any) -> None:
        metrics = list(task.aggregation())
        filters = [f["name"] for f in (task.config.filter_list or [])] or ["none"]
        if self.metric not in metrics:
            raise ConfigError(f"{self.where}: metric: {self.metric!r} is not produced by lm-eval task "
                              f"{self.ref.lm_eval!r} (it gives {', '.join(metrics)})")
        if not self.filter:
            if len(filters) > 1:
                raise ConfigError(f"{self.where}: metric: task {self.ref.lm_eval!r} has filters "
                                  f"{', '.join(filters)}; write metric: {self.metric},FILTER")
            self.filter = filters[0]
        elif self.filter not in filters:
            raise ConfigError(f"{self.where}: metric: filter {self.filter!r} is not one of task "
                              f"{self.ref.lm_eval!r}'s ({', '.join(filters)})")
        self.higher_is_better = bool(task.higher_is_better().get(self.metric, True))

    # --- scoring -------------------------------------------------------------------------------

    def _task(self, split: str) -> Any:
        """lm-eval's task object scoring the dataset split mapped to ``split`` (built once)."""
        if split not in self.ref.splits:
            raise ConfigError(f"{self.where}: splits: no dataset split mapped to {split!r} "
                              f"(mapped: {', '.join(self.ref.splits)})")
        if split not in self._tasks:
            from lm_eval.tasks._factory import TaskFactory

            overrides = {"test_split": self.ref.splits[split], "num_fewshot": self.ref.num_fewshot}
            try:
                task = TaskFactory().build(self._entry, overrides=overrides, registry=self._index)
            except Exception as err:  # noqa: BLE001 - lm-eval raises many kinds; one line for the user
                raise ConfigError(f"{self.where}: lm-eval task {self.ref.lm_eval!r} failed to load: "
                                  f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}") from None
            task.set_fewshot_seed(seed=FEWSHOT_SEED)
            self._check_metric(task)
            self._tasks[split] = task
        return self._tasks[split]

    def items(self, split: str) -> list[dict[str, Any]]:
        """The documents scored on ``split`` (loads and checks the task now)."""
        return list(self._task(split).eval_docs)

    def evaluate(self, backend: Any, split: str = "validation", limit: int | None = None) -> TaskResult:
        """Score the backend's current weights with lm-eval's evaluator on the mapped split."""
        from lm_eval.evaluator import evaluate

        from evomerge.evaluate.lm_eval_adapter import BackendLM

        task = self._task(split)
        # lm-eval draws a tqdm bar per call into stderr (a line per candidate in the run's display)
        with contextlib.redirect_stderr(io.StringIO()):
            out = evaluate(BackendLM(backend), {"tasks": {task.task_name: task}, "groups": {}},
                           limit=limit, bootstrap_iters=0, log_samples=True)
        samples = sorted((s for s in out["samples"][task.task_name] if s["filter"] == self.filter),
                         key=lambda s: s["doc_id"])
        items = [self._item_score(s) for s in samples]
        score = float(out["results"][task.task_name][f"{self.metric},{self.filter}"])
        return TaskResult(self.name, score, items, higher_is_better=self.higher_is_better, metric=self.metric)

    def _item_score(self, sample: dict[str, Any]) -> float:
        """A number per item: the metric's value, or for lm-eval's perplexity items
        (log-likelihood, words or bytes) the log-likelihood per word or byte, as native
        perplexity tasks store the mean log-prob per token."""
        value = sample.get(self.metric)
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value):
            return float(value[0]) / max(float(value[1]), 1.0)
        raise EvomergeError(f"{self.where}: metric {self.metric!r} of lm-eval task {self.ref.lm_eval!r} has no "
                            f"per-item number (item {sample['doc_id']}: {value!r}); pick one averaged over items")

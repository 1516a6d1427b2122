"""The body of one Ray evaluation actor: builds its evaluator once, then scores jobs.

A plain class (``ray.remote`` wraps it at pool start) so importing it needs no Ray. The
evaluator is built exactly as the in-process pool builds it (``build_evaluator``), so both
pools give the same results for the same recipes. Sources stay resident in the actor between
jobs: on the GPU Ray assigned to it, else on the CPU.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from dataclasses import replace
from typing import Any

from evomerge.errors import EvomergeError
from evomerge.evaluate.result import EvalResult
from evomerge.runtime.inprocess import build_evaluator, safe_evaluate
from evomerge.runtime.pool import EvalJob, EvaluatorSpec
from evomerge.runtime.threads import set_torch_threads, thread_env


def _torch_threads() -> int | None:
    """torch's thread setting in this actor (None when the evaluator never loaded torch)."""
    return sys.modules["torch"].get_num_threads() if "torch" in sys.modules else None


def _placement() -> tuple[str, str, bool]:
    """(node ip, node id, has a GPU) of this actor as Ray sees it."""
    import ray

    ctx = ray.get_runtime_context()
    try:
        ip = ray.util.get_node_ip_address()
    except Exception:  # noqa: BLE001 - only a label
        ip = socket.gethostname()
    return ip, ctx.get_node_id(), bool(ray.get_gpu_ids())


class EvalWorker:
    """Long-lived evaluator; a constructor error is reported by ``info`` (not raised) so the
    driver can print it as one line instead of a Ray traceback."""

    def __init__(self, spec: EvaluatorSpec, code_paths: list[str], env: dict[str, str], index: int) -> None:
        for path in code_paths:          # the driver's import paths (e.g. a module:Class backend)
            if path not in sys.path and os.path.isdir(path):
                sys.path.append(path)
        os.environ.update(env)           # the driver's EVOMERGE_* settings (e.g. where the zoo is)
        os.environ.update(thread_env(spec.threads))   # this worker's share of the cores
        self.ip, self.node_id, gpu = _placement()
        if gpu and "device" not in spec.options:
            spec = replace(spec, options={**spec.options, "device": "cuda"})
        self.device = spec.options.get("device", "cpu")
        self.name = f"ray{index}@{self.ip}:{os.getpid()}"
        self.error: str | None = None
        self.evaluator: Any = None
        try:
            self.evaluator = build_evaluator(spec)
            set_torch_threads(spec.threads)
        except Exception as err:  # noqa: BLE001 - reported through info()
            self.error = str(err) if isinstance(err, EvomergeError) else f"{type(err).__name__}: {err}"

    def info(self) -> dict[str, Any]:
        """Where this actor runs, and the evaluator's construction error if any."""
        return {"name": self.name, "pid": os.getpid(), "node_ip": self.ip, "node_id": self.node_id,
                "device": self.device, "error": self.error, "torch_threads": _torch_threads()}

    def close(self) -> None:
        """Release what the evaluator holds (the pool kills the actor next)."""
        if self.evaluator is not None:
            self.evaluator.close()

    def evaluate(self, job: EvalJob) -> tuple[EvalResult, float]:
        """The job's result and the seconds this actor was busy with it."""
        start = time.perf_counter()
        result = safe_evaluate(self.evaluator, job, self.name)
        result.worker = self.name            # which actor, on which node: kept in the store
        return result, time.perf_counter() - start

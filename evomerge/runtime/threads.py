"""How many threads one evaluation may use: its share of the machine, settable per experiment.

torch (and the fused merge kernel, which follows torch's setting) would otherwise use every
core in every process: k evaluations on one machine then fight over the same cores (on a busy
2-core machine an in-process search ran 3x slower than with one thread). The share is the
machine's cores for an in-process evaluation, cores / k for k local Ray workers, and the CPUs
Ray reserves per worker on a cluster; ``resources.threads`` overrides it. The run records
the value it used (store meta ``threads``).
"""

from __future__ import annotations

import math
import os
import sys
from typing import Any


def machine_cores() -> int:
    """Cores this process may run on (the affinity mask, which containers narrow)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def evaluation_threads(resources: Any, workers: int, address: str | None = None,
                       cores: int | None = None) -> int:
    """Threads per evaluation: ``resources.threads`` if set, else the evaluation's share."""
    explicit = getattr(resources, "threads", None)
    if explicit is not None:
        return int(explicit)
    if address:                        # a cluster: the CPUs Ray reserves for each worker
        return max(1, math.floor(float(getattr(resources, "cpus_per_worker", 1.0))))
    if workers <= 1:                   # in process: the machine
        return cores or machine_cores()
    cores = getattr(resources, "local_cpus", None) or cores or machine_cores()   # a local Ray
    return max(1, int(cores) // int(workers))


def set_torch_threads(threads: int | None) -> int | None:
    """Apply ``threads`` to torch when torch is loaded (a backend that never imports it needs
    nothing); returns the previous setting so a caller can restore it."""
    if threads is None or "torch" not in sys.modules:
        return None
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    return previous


def thread_env(threads: int | None) -> dict[str, str]:
    """Variables that size the OpenMP / BLAS pools of a fresh process before torch loads."""
    if threads is None:
        return {}
    return {k: str(int(threads)) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}

"""Checks made before a search starts, so a run that cannot work fails in one line before
anything is written, instead of spending its whole budget on failed evaluations.

The models (folders, tensor names, shapes, dtypes, device, memory) are checked by
``build_session`` (``evaluate.loading.preflight``); here, for the built-in backends: every task
file and its data split reads (YAML, UTF-8, JSON lines). Backends named ``module:Class`` define
their own inputs and are left to themselves.
"""

from __future__ import annotations

from evomerge.evaluate.backend import BACKENDS
from evomerge.evaluate.tasks import load_task
from evomerge.runtime.session import Session


def preflight(session: Session) -> None:
    """Raise a one-line EvomergeError for what would make every evaluation fail."""
    spec = session.spec
    if spec.backend not in BACKENDS:
        return
    for name in spec.tasks:
        if isinstance(name, str):  # lm-eval references are checked when the experiment is read
            load_task(name).items(spec.split)

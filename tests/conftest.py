"""Shared pytest fixtures (each block owned by the module that uses it)."""

from __future__ import annotations

import pytest


# --- merge engine: a tiny random Llama base + 3 experts, float32, sharded (tests/helpers_engine.py)
@pytest.fixture(scope="session")
def tiny_family(tmp_path_factory):
    from helpers_engine import build_family

    return build_family(tmp_path_factory.mktemp("family"), max_shard_size="200KB")


# --- zoo: the embedded tiny model zoo (evomerge/zoo/), built once per machine and cached
@pytest.fixture(scope="session")
def zoo_dir():
    """The built zoo (seed 0): $EVOMERGE_ZOO if set, else <repo>/.cache/zoo. The first session
    builds it (minutes; concurrent sessions wait on a lock), later ones reuse it. Sets
    EVOMERGE_ZOO so `zoo:NAME` resolves here, in subprocesses and in Ray workers started after."""
    import os
    from pathlib import Path

    from evomerge.zoo import build

    root = Path(os.environ.get("EVOMERGE_ZOO") or Path(__file__).resolve().parents[1] / ".cache" / "zoo")
    path = build(root)
    os.environ["EVOMERGE_ZOO"] = str(path)
    return path

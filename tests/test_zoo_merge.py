"""The zoo rewards merging: the committed recipe (experiments/recipes/zoo_math_words.yaml,
found by a per-group hill-climb on the validation split) beats both parents on the target
task's held-out test split (1995 balanced items) by far more than the noise."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from evomerge.evaluate.evaluator import Evaluator
from evomerge.recipe import load_recipe
from evomerge.runtime.pool import EvalJob, EvaluatorSpec

RECIPE = Path(__file__).resolve().parents[1] / "experiments" / "recipes" / "zoo_math_words.yaml"


def _alone(name: str) -> dict:
    return {"kind": "parameter", "method": "linear", "sources": [{"model": f"zoo:{name}", "parameters": {"weight": 1.0}}]}


@pytest.fixture(scope="module")
def target_scores(zoo_dir):
    ev = Evaluator(EvaluatorSpec(sources=("zoo:base", "zoo:math", "zoo:words"), tasks=("math_words",), split="test"))
    out = {}
    for i, (name, recipe) in enumerate([("math", _alone("math")), ("words", _alone("words")),
                                        ("merge", load_recipe(RECIPE).to_dict())]):
        res = ev.evaluate(EvalJob(i, recipe))
        assert not res.failed, res.error
        out[name] = res.item_scores["math_words"]
    return out


def test_the_merge_beats_both_parents_well_above_noise(target_scores):
    merge = target_scores["merge"]
    assert len(merge) >= 1000
    for parent in ("math", "words"):
        diff = [m - p for m, p in zip(merge, target_scores[parent])]
        mean = sum(diff) / len(diff)
        se = math.sqrt(sum((d - mean) ** 2 for d in diff) / (len(diff) - 1) / len(diff))
        assert mean > 0.1 and mean > 5 * se, (parent, mean, se)


def test_a_nan_recipe_is_a_failed_result_not_a_crash(zoo_dir):
    ev = Evaluator(EvaluatorSpec(sources=("zoo:base", "zoo:math"), tasks=("math_words",), split="validation",
                                 options={"limit": 5}))
    bad = ev.evaluate(EvalJob(7, {"kind": "parameter", "method": "task_arithmetic", "base": "zoo:base",
                                  "sources": [{"model": "zoo:math", "parameters": {"weight": 1e38}}],
                                  "parameters": {"lambda": 1e38}}))
    assert bad.failed and ("non-finite" in bad.error or "inf" in bad.error.lower()), bad.error
    missing = ev.evaluate(EvalJob(8, {"kind": "parameter", "method": "linear",
                                      "sources": [{"model": "zoo:nope", "parameters": {"weight": 1.0}}]}))
    assert missing.failed and "zoo:nope" in missing.error
    good = ev.evaluate(EvalJob(9, _alone("math")))
    assert not good.failed and len(good.item_scores["math_words"]) == 5 and "materialize" in good.timings

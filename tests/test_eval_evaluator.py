"""The Evaluator dispatches on recipe kind and reports what it did (on the built zoo)."""

from __future__ import annotations

from evomerge.evaluate.evaluator import Evaluator
from evomerge.runtime.pool import EvalJob, EvaluatorSpec


def test_dataflow_identity_path_scores_like_the_model_itself(zoo_dir):
    ev = Evaluator(EvaluatorSpec(sources=("zoo:math", "zoo:words"), tasks=("math", "count"), split="validation",
                                 options={"limit": 40}))
    alone = ev.evaluate(EvalJob(1, {"kind": "parameter", "method": "linear",
                                    "sources": [{"model": "zoo:math", "parameters": {"weight": 1.0}}]}))
    path = ev.evaluate(EvalJob(2, {"kind": "dataflow", "sources": [{"model": "zoo:math"}, {"model": "zoo:words"}],
                                   "embeddings_from": 0,
                                   "layers": [{"source": 0, "layer": i, "scale": 1.0} for i in range(4)]}))
    assert not alone.failed and not path.failed, (alone.error, path.error)
    assert path.item_scores == alone.item_scores and alone.scores["math"] > 0.5
    # the parameter model is allocated once and reused after a data-flow candidate
    again = ev.evaluate(EvalJob(3, {"kind": "parameter", "method": "linear",
                                    "sources": [{"model": "zoo:words", "parameters": {"weight": 1.0}}]}))
    assert again.scores["math"] < 0.05 and set(again.timings) >= {"materialize", "score", "total"}


def test_invalid_recipe_is_a_failed_result(zoo_dir):
    ev = Evaluator(EvaluatorSpec(sources=("zoo:math",), tasks=("math",), options={"limit": 5}))
    res = ev.evaluate(EvalJob(4, {"kind": "parameter", "method": "no_such_method",
                                  "sources": [{"model": "zoo:math"}]}))
    assert res.failed and res.scores == {} and "method" in res.error

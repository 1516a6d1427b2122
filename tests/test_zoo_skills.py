"""The built zoo (seed 0) has the intended skill gaps: each expert beats the base on its own
skill, and both parents of the target task are weak on it (scored on validation items)."""

from __future__ import annotations

import json

import pytest

from evomerge.evaluate.hf_backend import HFBackend
from evomerge.evaluate.tasks import load_task

N = 200  # validation items per task: a few seconds on a CPU


@pytest.fixture(scope="module")
def score(zoo_dir):
    backends: dict[str, HFBackend] = {}
    cache: dict[tuple[str, str], float] = {}

    def run(model: str, task: str) -> float:
        if (model, task) not in cache:
            if model not in backends:
                backends[model] = HFBackend.from_pretrained(zoo_dir / model)
            cache[model, task] = load_task(task).evaluate(backends[model], "validation", N).score
        return cache[model, task]

    return run


def test_zoo_models_are_vllm_friendly_llamas(zoo_dir):
    for name in ("base", "math", "words", "words_top", "reverse", "count", "words_stack"):
        config = json.loads((zoo_dir / name / "config.json").read_text())
        assert config["architectures"] == ["LlamaForCausalLM"]
        assert config["hidden_size"] // config["num_attention_heads"] == 32
        assert (zoo_dir / name / "generation_config.json").is_file()


@pytest.mark.parametrize("expert,task,margin", [
    ("math", "math", 0.4), ("words", "words", 0.5), ("words_top", "words", 0.5), ("reverse", "reverse", 0.2),
    ("count", "count", 0.1)])
def test_each_expert_beats_the_base_on_its_skill(score, expert, task, margin):
    assert score(expert, task) >= score("base", task) + margin


def test_both_parents_are_weak_on_the_target(score):
    assert score("math", "math_words") < 0.05  # right values, wrong format
    assert score("words", "math_words") < 0.2  # right format, guessed values
    assert score("words_top", "math_words") < 0.2
    assert score("base", "math_words") < 0.05


def test_routing_math_blocks_into_words_top_solves_the_target(zoo_dir, score):
    """words_top kept the base's blocks 0-2, so its block 3 and head can read math's blocks 0-2:
    the data-flow path math 0-2 -> words_top 3 (head from words_top) writes math's answer as a word."""
    from transformers import AutoTokenizer

    from evomerge.engine.dataflow import build_model
    from evomerge.recipe import parse_recipe

    recipe = parse_recipe({"kind": "dataflow", "sources": [{"model": "zoo:math"}, {"model": "zoo:words_top"}],
                           "embeddings_from": 0, "head_from": 1,
                           "layers": [{"source": 0, "layer": i} for i in range(3)] + [{"source": 1, "layer": 3}]})
    backend = HFBackend(build_model(recipe), AutoTokenizer.from_pretrained(str(zoo_dir / "math")))
    routed = load_task("math_words").evaluate(backend, "validation", N).score
    assert routed > 0.5 > max(score("math", "math_words"), score("words_top", "math_words"))


def test_routing_math_into_words_stack_composes_what_no_four_block_merge_does(zoo_dir, score):
    """words_stack learned the words skill reading math's last block: the 8-block path
    math 0-3 -> words_stack 0-3 answers the target; words_stack alone and plain task arithmetic of
    the two (4 blocks, each a sum of both models' blocks) do not."""
    from evomerge.evaluate.evaluator import Evaluator
    from evomerge.runtime.pool import EvalJob, EvaluatorSpec

    sources = [{"model": "zoo:math"}, {"model": "zoo:words_stack"}]
    routed = {"kind": "dataflow", "sources": sources, "embeddings_from": 0, "head_from": 1,
              "layers": [{"source": m, "layer": i} for m in (0, 1) for i in range(4)]}
    ta = {"kind": "parameter", "method": "task_arithmetic", "base": "zoo:base",
          "sources": [{"model": "zoo:math", "parameters": {"weight": 1.0}},
                      {"model": "zoo:words_stack", "parameters": {"weight": 1.0}}]}
    ev = Evaluator(EvaluatorSpec(("zoo:base", "zoo:math", "zoo:words_stack"), ("math_words",), split="validation",
                                 options={"limit": N}))
    routed_score, ta_score = (ev.evaluate(EvalJob(i, r)).scores["math_words"] for i, r in enumerate((routed, ta)))
    assert score("words_stack", "math_words") < 0.1 and score("words_stack", "words") < 0.5
    assert routed_score > 0.8 > ta_score + 0.3


def test_perplexity_is_lower_for_the_base_than_for_the_math_expert(score):
    assert score("base", "story_ppl") < score("math", "story_ppl")

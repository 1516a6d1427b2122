"""Scorers, task files and the HF backend on a small random zoo-shaped model (no zoo build)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from evomerge.errors import ConfigError
from evomerge.evaluate.requests import GenerationRequest, LoglikelihoodRequest, RollingRequest
from evomerge.evaluate.scorers import exact_match, load_scorer, regex_scorer
from evomerge.evaluate.tasks import load_task


@pytest.fixture(scope="module")
def random_lm(tmp_path_factory):
    from evomerge.zoo.builder import _save
    from evomerge.zoo.train import new_model

    path = tmp_path_factory.mktemp("rand") / "lm"
    _save(new_model(0), path)
    return path


@pytest.fixture(scope="module")
def backend(random_lm):
    from evomerge.evaluate.hf_backend import HFBackend

    return HFBackend.from_pretrained(random_lm, batch_size=7)


def test_exact_match_normalizes_space_and_case():
    assert exact_match(" Seven ", {"answer": "seven"}) == 1.0
    assert exact_match("seven .", {"answer": "seven"}) == 0.0
    assert exact_match("a  d b", {"answer": "a d b"}) == 1.0


def test_regex_scores_the_first_group():
    score = regex_scorer(r"answer is (\d+)")
    assert score("so the answer is 12 .", {"answer": "12"}) == 1.0
    assert score("so the answer is 13 .", {"answer": "12"}) == 0.0
    assert score("no number here", {"answer": "12"}) == 0.0


def test_scorer_by_dotted_path_and_bad_names():
    assert load_scorer("evomerge.evaluate.scorers:exact_match") is exact_match
    assert load_scorer("evomerge.evaluate.scorers.exact_match") is exact_match
    with pytest.raises(ConfigError, match="cannot import"):
        load_scorer("no_such_module:fn")
    with pytest.raises(ConfigError, match="needs a 'regex'"):
        load_scorer("regex")


def test_every_fitness_task_loads_with_fixed_disjoint_splits():
    for name in ("math", "math_words", "words", "reverse", "count", "story_ppl"):
        task = load_task(name)
        keys = {}
        for split in ("train", "validation", "test"):
            items = task.items(split)
            assert items, (name, split)
            keys[split] = {json.dumps(it, sort_keys=True) for it in items}
        assert not keys["test"] & keys["validation"] and not keys["test"] & keys["train"], name


def test_target_answers_are_balanced():
    answers = [it["answer"] for it in load_task("math_words").items("test")]
    counts = {a: answers.count(a) for a in set(answers)}
    assert len(answers) >= 1000 and len(counts) == 19 and len(set(counts.values())) == 1


def test_committed_data_matches_the_generators():
    from evomerge.zoo.fitness_data import task_items

    for name in ("math_words", "count"):
        assert task_items(name)["validation"] == load_task(name).items("validation")


def test_bad_task_yaml_is_one_line_error(tmp_path):
    (tmp_path / "bad.yaml").write_text("kind: generate\ndata: x\nscorer: nope\n")
    with pytest.raises(ConfigError, match="bad.yaml: scorer"):
        load_task(str(tmp_path / "bad.yaml"))
    (tmp_path / "typo.yaml").write_text("kind: generate\ndata: x\nmax_token: 3\n")
    with pytest.raises(ConfigError, match="unknown field"):
        load_task(str(tmp_path / "typo.yaml"))


def test_loglikelihood_batched_equals_one_at_a_time(backend):
    reqs = [LoglikelihoodRequest("tom has 3 apples . answer :", " 3"),
            LoglikelihoodRequest("reverse : a b c . answer :", " c b a"),
            LoglikelihoodRequest("7 is", " seven .")] * 5
    batched = backend.loglikelihood(reqs)
    single = [backend.loglikelihood([r])[0] for r in reqs]
    for (a, ga), (b, gb) in zip(batched, single):
        assert a == pytest.approx(b, abs=1e-5) and ga == gb
    assert all(lp < 0 for lp, _ in batched)


def test_loglikelihood_matches_a_manual_forward(backend):
    tok = backend.tokenizer
    ctx, cont = "sue has 5 coins . answer :", " 5"
    ids = tok(ctx)["input_ids"] + tok(cont, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logp = torch.log_softmax(backend.model(torch.tensor([ids])).logits[0], -1)
    assert backend.loglikelihood([LoglikelihoodRequest(ctx, cont)])[0][0] == pytest.approx(float(logp[-2, ids[-1]]), abs=1e-5)
    lp, n = backend.loglikelihood_rolling([RollingRequest("tom likes big apples .")])[0]
    assert n == 5 and lp < 0


def test_generation_is_deterministic_and_batch_independent(backend):
    reqs = [GenerationRequest(it["prompt"], (".",), 4) for it in load_task("math").items("validation")[:20]]
    first = backend.generate_until(reqs)
    assert first == backend.generate_until(reqs)
    assert first[:3] == [backend.generate_until([r])[0] for r in reqs[:3]]


def test_task_kinds_return_per_item_scores(backend):
    for name in ("math", "count", "story_ppl", "words"):
        res = load_task(name).evaluate(backend, "validation", limit=10)
        assert len(res.item_scores) == 10 and math.isfinite(res.score)
    ppl = load_task("story_ppl").evaluate(backend, "validation", limit=10)
    assert not ppl.higher_is_better and ppl.score > 1.0

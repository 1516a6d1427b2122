"""The zoo's tokenizer, corpus and build mechanics (tiny schedules; no full build here)."""

from __future__ import annotations

import json
import random

import pytest
import torch

from evomerge.errors import CheckpointError
from evomerge.zoo import corpus as c
from evomerge.zoo import builder as zoo_build
from evomerge.zoo.stages import Schedule
from evomerge.zoo.vocab import build_tokenizer, vocabulary

TINY = {name: (parent, mix, Schedule(steps=2, lr=1e-3, warmup=1, batch=2))
        for name, (parent, mix, _) in zoo_build.STAGES.items()}


def _texts(rng):
    yield from (c.joined(f(rng)) for f in (c.bare_equation, c.word_problem, c.lookup, c.reverse_item, c.count_item))
    yield c.joined(c.word_problem(rng, words=True))
    yield from (c.worked_problem(rng), c.story(rng), c.number_pair(rng))


def test_tokenizer_round_trips_every_generated_text(tmp_path):
    tok = build_tokenizer()
    tok.save_pretrained(str(tmp_path))
    from transformers import AutoTokenizer

    loaded = AutoTokenizer.from_pretrained(str(tmp_path))
    rng = random.Random(0)
    for _ in range(40):
        for text in _texts(rng):
            ids = loaded(text)["input_ids"]
            assert ids[0] == loaded.bos_token_id and loaded.unk_token_id not in ids, text
            assert loaded.decode(ids, skip_special_tokens=True) == text
    assert len(set(vocabulary())) == len(vocabulary()) == loaded.vocab_size


def test_arithmetic_answers_are_balanced_and_correct():
    rng = random.Random(1)
    answers = []
    for _ in range(3800):
        a, op, b, ans = c.equation(rng)
        assert ans == (a + b if op == "+" else a - b) and 0 <= min(a, b) and max(a, b) <= 20
        answers.append(ans)
    counts = [answers.count(k) for k in range(19)]
    assert min(counts) > 140 and max(counts) < 260


def test_training_is_deterministic_in_the_seed():
    from evomerge.zoo.train import new_model, train

    torch.set_num_threads(1)
    sched = Schedule(steps=3, lr=1e-3, warmup=1, batch=2)
    runs = []
    for seed in (0, 0, 1):
        model = new_model(seed)
        train(model, "math", sched, seed)
        runs.append(model.state_dict())
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert not all(torch.equal(runs[0][k], runs[2][k]) for k in runs[0])


def test_train_top_trains_only_the_last_blocks_and_the_head():
    from evomerge.zoo.train import new_model, train

    torch.set_num_threads(1)
    model = new_model(0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train(model, "words", Schedule(steps=2, lr=1e-3, warmup=1, batch=2, train_top=1), 0)
    moved = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    top = {k for k in before if k.startswith(("model.layers.3.", "model.norm.", "lm_head."))}
    assert moved == top
    assert all(p.requires_grad for p in model.parameters())  # nothing left frozen for a later stage


def test_stacked_member_trains_its_blocks_and_head_on_the_frozen_model_below():
    """words_stack's recipe: its blocks, norm and head learn on top of math's embeddings and blocks
    (run as one 8-block model); math stays untouched, the member's own embeddings stay its parent's,
    the result is deterministic and depends on the model below."""
    from evomerge.zoo.train import new_model, train_stacked

    torch.set_num_threads(1)
    sched = Schedule(steps=2, lr=1e-3, warmup=1, batch=2)
    below = new_model(1)
    below_before = {k: v.clone() for k, v in below.state_dict().items()}
    runs = []
    for under in (below, below, new_model(2)):
        member = new_model(0)
        before = {k: v.clone() for k, v in member.state_dict().items()}
        train_stacked(member, under, "words", sched, 0)
        after = member.state_dict()
        assert {k for k in after if not torch.equal(after[k], before[k])} == set(after) - {"model.embed_tokens.weight"}
        assert member.config.num_hidden_layers == 4 and all(p.requires_grad for p in member.parameters())
        runs.append(after)
    assert all(torch.equal(v, below_before[k]) for k, v in below.state_dict().items())
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert not torch.equal(runs[0]["model.layers.0.mlp.down_proj.weight"], runs[2]["model.layers.0.mlp.down_proj.weight"])


def test_build_is_atomic_cached_and_reproducible(tmp_path, monkeypatch):
    monkeypatch.setattr(zoo_build, "STAGES", TINY)
    out = tmp_path / "zoo"
    logs = []
    zoo_build.build(out, seed=3, log=logs.append)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seed"] == 3 and manifest["models"] == list(TINY)
    for name in TINY:
        files = {p.name for p in (out / name).iterdir()}
        assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json"} <= files
        assert not any(f.endswith(".bin") for f in files)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".zoo.tmp")]
    logs.clear()
    zoo_build.build(out, seed=3, log=logs.append)
    assert any("up to date" in m for m in logs)
    zoo_build.build(out, seed=3, force=True)
    assert json.loads((out / "manifest.json").read_text())["sha256"] == manifest["sha256"]
    (out / "words" / "model.safetensors").write_bytes(b"corrupt")
    assert not zoo_build.is_up_to_date(out, seed=3)


def test_resolve_names_and_errors(tmp_path):
    with pytest.raises(CheckpointError, match="unknown zoo model"):
        zoo_build.resolve("zoo:nope", tmp_path)
    with pytest.raises(CheckpointError, match="zoo not built"):
        zoo_build.resolve("zoo:math", tmp_path)
    with pytest.raises(CheckpointError, match="not a zoo reference"):
        zoo_build.resolve("math", tmp_path)

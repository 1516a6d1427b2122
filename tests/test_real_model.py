"""The product on the real model (SmolLM2-135M-Instruct, tied embeddings, 9 heads / 3 KV heads):
a two-evaluation search with cheaply made experts, resumed, its Pareto front, the export with its
mergekit.yaml merged again by `evomerge merge`; data-flow paths; in-place HF and vLLM agreeing,
also after hot-swaps. The experts here take two optimizer steps (seconds): the real experts and the
measured results are in benchmarks/real_model.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow
A, B, BASE = "zoo:smollm2-ci-math", "zoo:smollm2-ci-words", "zoo:smollm2"


def _cli(*args: str):
    from typer.testing import CliRunner

    from evomerge.cli import app

    return CliRunner().invoke(app, list(args))


@pytest.fixture(scope="module")
def cheap_experts(real_base):
    """Two experts of two steps each on the top layers, built once and cached like the real ones."""
    from evomerge.zoo.real import build_expert
    from evomerge.zoo.real_train import ExpertSpec

    for name, skill in (("ci-math", "math"), ("ci-words", "words")):
        build_expert(name, ExpertSpec(skill, steps=2, lr=3e-4, first_layer=26, batch=4, warmup=1))
    return real_base.parent


def ties(wa: float, wb: float, density: float = 0.5) -> dict:
    return {"kind": "parameter", "method": "ties", "base": BASE, "dtype": "float32",
            "parameters": {"lambda": 1.0, "normalize": False},
            "sources": [{"model": A, "parameters": {"weight": wa, "density": density}},
                        {"model": B, "parameters": {"weight": wb, "density": density}}]}


def tensors(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    out: dict[str, torch.Tensor] = {}
    for f in sorted(folder.glob("*.safetensors")):
        out.update(load_file(str(f)))
    return out


def test_cheap_experts_differ_from_the_base_only_in_their_trained_layers(cheap_experts):
    base, expert = tensors(cheap_experts / "smollm2"), tensors(cheap_experts / "smollm2-ci-math")
    changed = {n for n in base if not torch.equal(base[n], expert[n])}
    assert changed and all(n.startswith(("model.layers.26.", "model.layers.27.", "model.layers.28.",
                                         "model.layers.29.", "model.norm.")) for n in changed)
    assert torch.equal(base["model.embed_tokens.weight"], expert["model.embed_tokens.weight"])


def test_a_search_resumes_and_exports_a_checkpoint_that_its_mergekit_config_rebuilds(cheap_experts, tmp_path):
    from evomerge.runtime.store import RunStore

    exp = yaml.safe_load((ROOT / "experiments" / "smollm2_ps.yaml").read_text())
    exp["models"]["sources"] = [A, B]
    del exp["initial_recipe"]  # it names the real experts, not the cheap ones
    exp["search_space"] = str(ROOT / "search_spaces" / "ps_smollm2.yaml")
    exp["budget"] = 2
    exp["fitness"]["options"] = {"limit": 4, "batch_size": 4}
    path = tmp_path / "smoke.yaml"
    path.write_text(yaml.safe_dump(exp))
    runs = tmp_path / "runs"
    res = _cli("run", str(path), "--runs-dir", str(runs), "--no-progress")
    assert res.exit_code == 0, res.stderr
    assert "smollm2-ps: 2/2 evaluations (0 failed)" in res.stdout
    run = runs / "smollm2-ps"
    again = _cli("run", "--resume", str(run), "--no-progress")
    assert again.exit_code == 0 and "2/2 evaluations" in again.stdout
    trials = RunStore.open(run).trials()
    assert len(trials) == 2 and all(t.objectives for t in trials)

    front = _cli("pareto", str(run))
    assert front.exit_code == 0 and "task_arithmetic" in front.stdout

    out = tmp_path / "winner"
    exported = _cli("export", str(run), "--trial", "best", "--out", str(out), "--no-eval")
    assert exported.exit_code == 0, exported.stderr
    config = yaml.safe_load((out / "config.json").read_text())
    assert config["tie_word_embeddings"] is True and config["num_key_value_heads"] == 3
    mk = yaml.safe_load((out / "mergekit.yaml").read_text())
    assert mk["merge_method"] == "task_arithmetic"
    again_out = tmp_path / "from-mergekit"
    merged = _cli("merge", str(out / "mergekit.yaml"), "--out", str(again_out))
    assert merged.exit_code == 0, merged.stderr
    ours, theirs = tensors(out), tensors(again_out)
    assert ours.keys() == theirs.keys() and "lm_head.weight" not in ours
    # the export is bf16 like its sources; the mergekit config names only the math dtype (float32),
    # so that merge comes out in float32: the same numbers before the final rounding
    assert {t.dtype for t in ours.values()} == {torch.bfloat16}
    assert all(torch.equal(ours[n], theirs[n].to(torch.bfloat16)) for n in ours)


def test_a_dataflow_path_over_tied_models_keeps_one_embedding_and_reproduces_a_source(cheap_experts, tmp_path):
    from evomerge.engine.dataflow import merge_to_disk
    from evomerge.evaluate.hf_backend import HFBackend
    from evomerge.recipe import parse_recipe

    def path(hops):
        return parse_recipe({"kind": "dataflow", "sources": [{"model": BASE}, {"model": A}], "embeddings_from": 0,
                             "layers": [{"source": s, "layer": i, "scale": 1.0} for s, i in hops]})

    merge_to_disk(path([(0, i) for i in range(30)]), tmp_path / "same")
    base, same = tensors(cheap_experts / "smollm2"), tensors(tmp_path / "same")
    assert same.keys() == base.keys() and "lm_head.weight" not in same
    assert all(torch.equal(same[n].float(), base[n].float()) for n in base)
    merge_to_disk(path([(0, i) for i in range(26)] + [(1, 26), (1, 27), (1, 28), (1, 29), (1, 29)]), tmp_path / "deep")
    deep = HFBackend.from_pretrained(tmp_path / "deep")
    assert deep.model.config.num_hidden_layers == 31 and deep.model.config.tie_word_embeddings
    assert deep.model.lm_head.weight.data_ptr() == deep.model.model.embed_tokens.weight.data_ptr()


@pytest.fixture(scope="module")
def in_place_hf(cheap_experts):
    """The HF backend on resident base + experts, recipes materialized into one model in place."""
    from evomerge.evaluate.hf_backend import HFBackend
    from evomerge.runtime.pool import EvaluatorSpec

    # float32 model: the recipes below ask for float32 tensors (the default model is in the
    # sources' stored dtype, bf16 here)
    return HFBackend.from_spec(EvaluatorSpec(sources=(BASE, A, B), tasks=("smollm2_math_words",),
                                             options={"model_dtype": "float32"}))


def test_in_place_hf_loading_writes_the_tensors_of_the_streaming_merge(in_place_hf, tmp_path):
    from evomerge.engine import merge_to_disk
    from evomerge.recipe import parse_recipe

    hf = in_place_hf
    for i, recipe in enumerate((ties(1.0, 1.0), ties(2.0, 0.5, density=0.3))):
        merge_to_disk(parse_recipe(recipe), tmp_path / str(i))
        hf.load(parse_recipe(recipe))
        state = hf.model.state_dict()
        written = tensors(tmp_path / str(i))
        assert written.keys() == {n for n in state if n != "lm_head.weight"}
        assert all(torch.equal(state[n], t) for n, t in written.items())
        assert hf.model.lm_head.weight.data_ptr() == hf.model.model.embed_tokens.weight.data_ptr()  # still tied


class _Recording:
    """The backend, recording every generation request and its output."""

    def __init__(self, backend):
        self.backend, self.seen = backend, []

    def __getattr__(self, name):
        return getattr(self.backend, name)

    def generate_until(self, requests):
        outs = self.backend.generate_until(requests)
        self.seen += [(r.context, tuple(r.until), r.max_tokens, o) for r, o in zip(requests, outs)]
        return outs


def test_the_lm_eval_form_of_the_real_tasks_asks_and_scores_exactly_as_the_native_tasks(in_place_hf, monkeypatch):
    """fitness/lm_eval/smollm2_*.yaml: the same prompts, stop strings and token budget reach the
    backend, and every item scores the same (benchmarks/real_model.py checks the real merges)."""
    pytest.importorskip("lm_eval")
    from evomerge.evaluate.task_loading import load_task_ref
    from evomerge.recipe import parse_recipe

    monkeypatch.chdir(ROOT)   # lm-eval resolves the tasks' data_files against the current folder
    in_place_hf.load(parse_recipe(ties(1.0, 1.0)))
    for task in ("smollm2_words", "smollm2_math_words"):
        native, lm = _Recording(in_place_hf), _Recording(in_place_hf)
        ref = {"lm_eval": task, "include_path": str(ROOT / "fitness" / "lm_eval"), "metric": "exact_match",
               "splits": {"validation": "validation", "test": "test"}}
        want = load_task_ref(task).evaluate(native, "test", 21).item_scores
        got = load_task_ref(ref).evaluate(lm, "test", 21).item_scores
        assert len(native.seen) == 21 and sorted(lm.seen) == sorted(native.seen)   # lm-eval may reorder
        assert got == want


def _requests():
    from evomerge.evaluate.requests import GenerationRequest, LoglikelihoodRequest
    from evomerge.evaluate.tasks import load_task

    task = load_task("smollm2_math_words")
    items = task.items("validation")[:8]
    return ([GenerationRequest(it["prompt"], task.until, task.max_tokens) for it in items],
            [LoglikelihoodRequest(it["prompt"], it["answer"]) for it in items])


def _agree(vllm, hf, gen, ll) -> tuple:
    got = (vllm.generate_until(gen), vllm.loglikelihood(ll))
    ref = (hf.generate_until(gen), hf.loglikelihood(ll))
    assert got[0] == ref[0]
    assert max(abs(a - b) for (a, _), (b, _) in zip(got[1], ref[1])) < LL_TOL, (got[1], ref[1])
    return got


LL_TOL = 2e-3
no_vllm = pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vllm is not installed")


@pytest.mark.vllm
@no_vllm
def test_vllm_agrees_with_hf_on_a_real_checkpoint(cheap_experts):
    from evomerge.evaluate.hf_backend import HFBackend
    from evomerge.evaluate.vllm_backend import VLLMBackend

    gen, ll = _requests()
    folder = cheap_experts / "smollm2-ci-math"
    vllm = VLLMBackend.from_pretrained(folder, max_model_len=256)
    try:
        _agree(vllm, HFBackend.from_pretrained(folder), gen, ll)
    finally:
        vllm.close()


@pytest.mark.vllm
@no_vllm
def test_vllm_agrees_with_in_place_hf_on_the_real_model_across_hot_swaps(in_place_hf):
    from evomerge.evaluate.vllm_backend import VLLMBackend
    from evomerge.recipe import parse_recipe
    from evomerge.runtime.pool import EvaluatorSpec

    spec = EvaluatorSpec(sources=(BASE, A, B), tasks=("smollm2_math_words",), backend="vllm",
                         options={"max_model_len": 256, "kv_cache_gib": 1, "dtype": "float32"})
    gen, ll = _requests()
    hf = in_place_hf
    x, y = ties(1.0, 1.0), ties(2.0, 0.5, density=0.3)
    vllm = VLLMBackend.from_spec(spec)
    try:
        seen = []
        for recipe in (x, y, x):
            vllm.load(recipe)
            hf.load(parse_recipe(recipe))
            seen.append(_agree(vllm, hf, gen, ll))
        assert seen[2] == seen[0]  # swapping back reproduces vLLM's outputs exactly
    finally:
        vllm.close()

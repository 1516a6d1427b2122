"""`evomerge export` without re-scoring: the files, their fidelity, atomicity and refusals.

Trials with real recipes over the engine's tiny random Llama family, stored through RunStore.
(Scores at export time, on the zoo, are in tests/test_export_scores.py.)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from evomerge.cli import app
from helpers_engine import load_tensors
from helpers_runs import write_run

MERGEKIT = Path(__file__).resolve().parents[1] / ".venv-mergekit" / "bin" / "mergekit-yaml"


def _recipes(fam: dict[str, Path]) -> dict[str, dict]:
    ties = {"kind": "parameter", "method": "ties", "base": str(fam["base"]),
            "sources": [{"model": str(fam["e0"]), "parameters": {"weight": 1.2, "density": 0.5}},
                        {"model": str(fam["e1"]), "parameters": {"weight": {"default": 0.7, "attn": [0.2, 1.0]}, "density": 0.8}}],
            "parameters": {"lambda": 1.0}, "dtype": "float32", "seed": 0}
    path = [{"source": 0, "layer": 0, "scale": 1.0}, {"source": 1, "layer": 1, "scale": 0.8},
            {"source": 1, "layer": 2, "scale": 1.0}, {"source": 0, "layer": 2, "scale": 1.25},
            {"source": 0, "layer": 3, "scale": 1.0}, {"source": 1, "layer": 3, "scale": 1.0}]
    dataflow = {"kind": "dataflow", "sources": [{"model": str(fam["e0"])}, {"model": str(fam["e1"])}],
                "embeddings_from": 0, "layers": path, "dtype": "float32"}
    hybrid = {"kind": "dataflow", "sources": [{"model": str(fam["e2"])}, {"recipe": ties}],
              "embeddings_from": 0, "layers": path[:5], "dtype": "float32"}
    plain = {**dataflow, "layers": [{**h, "scale": 1.0} for h in path[:5]]}     # starts and ends in source 0
    dare = {"kind": "parameter", "method": "dare_ties", "base": str(fam["base"]), "dtype": "float32", "seed": 3,
            "sources": [{"model": str(fam["e0"]), "parameters": {"weight": 0.8, "density": 0.5}},
                        {"model": str(fam["e1"]), "parameters": {"weight": 0.6, "density": 0.7}}]}
    return {"ties": ties, "dataflow": dataflow, "hybrid": hybrid, "plain": plain, "dare": dare}


@pytest.fixture(scope="module")
def run(tiny_family, tmp_path_factory):
    r = _recipes(tiny_family)
    trials = [{"recipe": r["ties"], "values": [0.5]}, {"recipe": r["dataflow"], "values": [0.6]},
              {"recipe": r["hybrid"], "values": [0.7]},
              {"recipe": {**r["ties"], "base": "/nonexistent/base"}, "values": [0.1]},
              {"recipe": r["ties"], "error": "worker died"},
              {"recipe": r["plain"], "values": [0.2]}, {"recipe": r["dare"], "values": [0.3]}]
    return write_run(tmp_path_factory.mktemp("exp"), "exp", {"acc": "maximize"}, trials,
                     experiment={"name": "exp", "fitness": {"split": "validation"}}, searcher="cmaes", budget=50)


def _export(run: Path, out: Path, *args: str):
    return CliRunner().invoke(app, ["export", str(run), "--out", str(out), "--no-eval", *args])


def _reload(folder: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder, use_safetensors=True).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    return model, tok


def _logits(model, tok) -> torch.Tensor:
    ids = tok("w1 w5 w9 w13 w40", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return model(ids).logits


def test_parameter_winner_reloads_rebuilds_bit_for_bit_and_documents_itself(run, tmp_path):
    out = tmp_path / "ties"
    from evomerge.export import export_trial

    export_trial(str(run), out, which="0", evaluate=False, max_shard_bytes=200_000)
    names = {p.name for p in out.iterdir()}
    assert "model.safetensors.index.json" in names and "evomerge_recipe.yaml" not in names
    assert {"config.json", "generation_config.json", "tokenizer.json", "recipe.yaml", "mergekit.yaml", "README.md"} <= names
    assert any(n.endswith(".safetensors") for n in names) and not any(n.endswith(".bin") for n in names)
    model, tok = _reload(out)
    assert torch.isfinite(_logits(model, tok)).all()
    # recipe.yaml rebuilds the same tensors through `evomerge merge`
    rebuilt = tmp_path / "rebuilt"
    merged = CliRunner().invoke(app, ["merge", str(out / "recipe.yaml"), "--out", str(rebuilt)])
    assert merged.exit_code == 0, merged.output
    a, b = load_tensors(out), load_tensors(rebuilt)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    card = (out / "README.md").read_text()
    for needle in ("trial 0", "searcher | cmaes", "method | ties (parameter space)", "budget | 50 evaluations (7 finished",
                   "run | `exp`", "objective **acc** (maximize) | 0.5000", "stored (validation, during search)",
                   "/e0`", "/e1`", "/base`", "evomerge merge recipe.yaml"):
        assert needle in card, needle


def test_best_is_the_hybrid_winner_with_its_evolved_layer_count(run, tmp_path, tiny_family):
    from evomerge.engine.dataflow import build_model
    from evomerge.recipe import parse_recipe

    out = tmp_path / "best"
    result = _export(run, out)
    assert result.exit_code == 0, result.output
    assert "exported trial 2" in result.output
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["num_hidden_layers"] == 5
    assert not (out / "mergekit.yaml").exists()
    model, tok = _reload(out)
    assert len(model.model.layers) == 5
    # the reloaded checkpoint computes what the engine's in-memory data-flow model computes
    recipe = parse_recipe(_recipes(tiny_family)["hybrid"])
    assert torch.allclose(_logits(model, tok), _logits(build_model(recipe), tok), atol=1e-5)
    card = (out / "README.md").read_text()
    assert "hybrid" in card and "5 decoder layers (sources: 4, 4)" in card
    assert "folded into the output projections" in card and "No mergekit.yaml" in card


def test_dataflow_winner_scales_fold_into_a_plain_checkpoint(run, tmp_path):
    out = tmp_path / "df"
    assert _export(run, out, "--trial", "1").exit_code == 0
    model, tok = _reload(out)
    assert len(model.model.layers) == 6
    t = load_tensors(out)
    e1 = load_tensors(Path(_source_models(out)[1]))
    # hop 1 (scale 0.8) and every later hop have o_proj/down_proj divided by the running product
    assert torch.allclose(t["model.layers.1.self_attn.o_proj.weight"], e1["model.layers.1.self_attn.o_proj.weight"] / 0.8)
    assert torch.allclose(t["model.layers.5.mlp.down_proj.weight"], e1["model.layers.3.mlp.down_proj.weight"] / (0.8 * 1.25))
    assert torch.equal(t["model.layers.1.self_attn.q_proj.weight"], e1["model.layers.1.self_attn.q_proj.weight"])


def _source_models(out: Path) -> list[str]:
    import yaml

    recipe = yaml.safe_load((out / "recipe.yaml").read_text())
    return [s["model"] for s in recipe["sources"]]


def test_refuses_to_overwrite_without_force(run, tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    refused = _export(run, out, "--trial", "0")
    assert refused.exit_code == 2 and "--force" in refused.output
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    forced = _export(run, out, "--trial", "0", "--force")
    assert forced.exit_code == 0, forced.output
    assert not (out / "keep.txt").exists() and (out / "recipe.yaml").exists()


def test_failure_leaves_nothing_behind(run, tmp_path):
    out = tmp_path / "broken"
    result = _export(run, out, "--trial", "3")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "nonexistent" in result.output
    assert list(tmp_path.iterdir()) == []


def test_failure_after_the_weights_are_written_leaves_nothing_behind(run, tmp_path):
    # this run's stored experiment is only a stub, so re-scoring fails after the checkpoint is written
    out = tmp_path / "half"
    result = CliRunner().invoke(app, ["export", str(run), "--trial", "0", "--out", str(out)])
    assert result.exit_code == 2 and "stored experiment" in result.output and "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args,message", [(["--trial", "4"], "trial 4 of run exp is failed (worker died)"),
                                          (["--trial", "9"], "run exp has no trial 9"),
                                          (["--trial", "x"], "'x' is not a trial number"),
                                          (["--objective", "speed"], "'speed' is not an objective")])
def test_bad_choices_are_one_line_errors(run, tmp_path, args, message):
    result = _export(run, tmp_path / "o", *args)
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "o").exists()


@pytest.mark.mergekit
@pytest.mark.skipif(not MERGEKIT.exists(), reason=".venv-mergekit is absent (scripts/setup.sh creates it)")
def test_mergekit_yaml_gives_the_same_tensors_in_mergekit(run, tmp_path):
    out = tmp_path / "ties"
    assert _export(run, out, "--trial", "0").exit_code == 0
    mk = tmp_path / "mk"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([str(MERGEKIT), str(out / "mergekit.yaml"), str(mk), "--no-copy-tokenizer"],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ours, theirs = load_tensors(out), load_tensors(mk)
    assert ours.keys() == theirs.keys()
    worst = max((ours[k] - theirs[k].to(ours[k].dtype)).abs().max().item() for k in ours)
    assert worst < 1e-5, worst
    shutil.rmtree(mk)


@pytest.mark.mergekit
@pytest.mark.skipif(not MERGEKIT.exists(), reason=".venv-mergekit is absent (scripts/setup.sh creates it)")
def test_mergekit_yaml_for_a_plain_layer_path_and_a_dare_merge_runs_in_mergekit(run, tmp_path, tiny_family):
    """A data-flow path without scales: mergekit's passthrough slices give our tensors exactly.
    DARE with 1/density: mergekit's DARE (L1 rescale, its own drops) gives the same merge in
    distribution: the same share of each task vector kept, the same L1 size of the change."""
    import yaml

    from helpers_mergekit import run_mergekit

    outs = {}
    for name, trial in (("plain", "5"), ("dare", "6")):
        outs[name] = tmp_path / name
        assert _export(run, outs[name], "--trial", trial).exit_code == 0
    configs = {name: yaml.safe_load((out / "mergekit.yaml").read_text()) for name, out in outs.items()}
    assert configs["plain"]["merge_method"] == "passthrough"
    assert [s["sources"][0]["layer_range"] for s in configs["plain"]["slices"]] == [[0, 1], [1, 3], [2, 4]]
    assert configs["dare"]["merge_method"] == "dare_ties" and configs["dare"]["parameters"]["rescale"] is True
    assert "equal in distribution" in (outs["dare"] / "README.md").read_text()
    (tmp_path / "mk").mkdir()
    theirs = run_mergekit(configs, tmp_path / "mk")

    ours, mk = load_tensors(outs["plain"]), load_tensors(theirs["plain"])
    assert ours.keys() == mk.keys() and all(torch.equal(ours[k], mk[k]) for k in ours)

    ours, mk = load_tensors(outs["dare"]), load_tensors(theirs["dare"])
    base = load_tensors(tiny_family["base"])
    assert ours.keys() == mk.keys()
    for k in ("model.embed_tokens.weight", "model.layers.1.mlp.down_proj.weight", "lm_head.weight"):
        a, b = ours[k] - base[k], mk[k] - base[k]
        assert abs((a != 0).float().mean().item() - (b != 0).float().mean().item()) < 0.03, k
        assert a.abs().sum().item() == pytest.approx(b.abs().sum().item(), rel=0.05), k
        assert not torch.equal(a, b)  # independent draws

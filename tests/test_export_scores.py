"""Exported winners of short real runs on the zoo reload with transformers and score what the
run stored; the card's validation and test scores are the Evaluator's at export time."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from evomerge.cli import app

REPO = Path(__file__).resolve().parents[1]
LIMIT = 40
TASK = "math_words"


def _short_run(kind: str, root: Path) -> Path:
    """experiments/evo_<kind>.yaml with a budget of 3 and LIMIT items, run for real."""
    exp = yaml.safe_load((REPO / "experiments" / f"evo_{kind}.yaml").read_text())
    exp["search_space"] = str((REPO / "experiments" / exp["search_space"]).resolve())
    exp["budget"] = 3
    exp["fitness"]["options"] = {**exp["fitness"].get("options", {}), "limit": LIMIT}
    path = root / f"{kind}.yaml"
    path.write_text(yaml.safe_dump(exp))
    result = CliRunner().invoke(app, ["run", str(path), "--runs-dir", str(root / "runs"), "--no-progress"])
    assert result.exit_code == 0, result.output
    return root / "runs" / exp["name"]


def _card_scores(card: str, task: str) -> tuple[float, float, float]:
    row = re.search(rf"^\| task `{task}` \| ([0-9.]+) \| ([0-9.]+) \| ([0-9.]+) \|$", card, re.M)
    assert row, card
    return tuple(float(v) for v in row.groups())


@pytest.mark.slow
@pytest.mark.parametrize("kind,layers", [("ps", 4), ("dfs", None), ("hybrid", None)])
def test_exported_winner_reloads_and_reproduces_its_stored_validation_score(zoo_dir, tmp_path, kind, layers):
    from evomerge.evaluate.evaluator import evaluate_model
    from evomerge.evaluate.hf_backend import HFBackend
    from evomerge.export import pick_trial
    from evomerge.runtime.store import RunStore

    run = _short_run(kind, tmp_path)
    store = RunStore.open(str(run))
    best, _ = pick_trial(store.info(), store.trials(), "best")
    out = tmp_path / "export"
    result = CliRunner().invoke(app, ["export", str(run), "--trial", "best", "--out", str(out)])
    assert result.exit_code == 0, result.output

    backend = HFBackend.from_pretrained(out)              # AutoModelForCausalLM, safetensors only
    recipe = yaml.safe_load((out / "recipe.yaml").read_text())
    expected_layers = layers or len(recipe["layers"])
    assert backend.model.config.num_hidden_layers == expected_layers == len(backend.model.model.layers)
    validation = evaluate_model(backend, [TASK], "validation", LIMIT)[TASK].score
    test = evaluate_model(backend, [TASK], "test")[TASK].score          # the whole held-out split
    assert validation == pytest.approx(best.scores[TASK], abs=1e-12)   # what the run stored

    card = (out / "README.md").read_text()
    assert f"(the first {LIMIT} items); the test split is scored in full" in card
    stored, card_validation, card_test = _card_scores(card, TASK)
    assert stored == pytest.approx(best.scores[TASK], abs=5e-5)
    assert card_validation == pytest.approx(validation, abs=5e-5)
    assert card_test == pytest.approx(test, abs=5e-5)
    assert f"validation: {TASK} {validation:.4f}" in result.output

"""Winners of short real runs (`evomerge run`) over the engine's tiny random family, exported with
scores: the checkpoint reloads with transformers and reproduces the score the run stored.

Two small fitness tasks over the family's word vocabulary are written here (a perplexity and a
multiple-choice task) so the scores are sensitive to every weight without needing the zoo;
tests/test_export_scores.py does the same on the zoo's real skills for all three kinds of space.
"""

from __future__ import annotations

import json
import os
import random
import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from evomerge.cli import app

REPO = Path(__file__).resolve().parents[1]
SPACES = {"ps": "ps_ties_blocks.yaml", "dfs": "dfs.yaml", "hybrid": "hybrid.yaml"}
LIMIT = 12   # of 24 items per split: the search and validation use 12, the card's test all 24


def _write_tasks(root: Path) -> Path:
    rng = random.Random(0)
    words = [f"w{i}" for i in range(4, 60)]
    tasks = {"tiny_ppl": ("perplexity", lambda: {"text": " ".join(rng.choices(words, k=12))}),
             "tiny_mc": ("multiple_choice", lambda: {"prompt": " ".join(rng.choices(words, k=6)),
                                                     "choices": rng.sample(words, 3), "answer": rng.randrange(3)})}
    for name, (kind, make) in tasks.items():
        (root / f"{name}.yaml").write_text(yaml.safe_dump({"name": name, "kind": kind, "data": f"data/{name}"}))
        data = root / "data" / name
        data.mkdir(parents=True)
        for split in ("train", "validation", "test"):
            (data / f"{split}.jsonl").write_text("".join(json.dumps(make()) + "\n" for _ in range(24)))
    return root


@pytest.fixture(scope="module")
def fitness(tmp_path_factory):
    root = _write_tasks(tmp_path_factory.mktemp("fitness"))
    old = os.environ.get("EVOMERGE_FITNESS")
    os.environ["EVOMERGE_FITNESS"] = str(root)
    yield root
    if old is None:
        os.environ.pop("EVOMERGE_FITNESS", None)
    else:
        os.environ["EVOMERGE_FITNESS"] = old


def short_run(kind: str, family: dict[str, Path], root: Path) -> Path:
    exp = {"name": f"tiny-{kind}", "models": {"sources": [str(family["e0"]), str(family["e1"])]},
           "search_space": str(REPO / "search_spaces" / SPACES[kind]),
           "fitness": {"tasks": ["tiny_ppl", "tiny_mc"], "split": "validation", "options": {"limit": LIMIT},
                       "objectives": [{"name": "ppl", "tasks": ["tiny_ppl"], "direction": "minimize"}]},
           "searcher": {"name": "cmaes", "options": {"sigma0": 0.3}}, "budget": 3, "seed": 0, "backend": "hf"}
    if kind != "dfs":
        exp["models"]["base"] = str(family["base"])
        exp["references"] = ["parents", "untuned", "start"]
    path = root / f"{kind}.yaml"
    path.write_text(yaml.safe_dump(exp))
    result = CliRunner().invoke(app, ["run", str(path), "--runs-dir", str(root / "runs"), "--no-progress"])
    assert result.exit_code == 0, result.output
    _outputs[exp["name"]] = result.output
    return root / "runs" / exp["name"]


_outputs: dict[str, str] = {}


def run_output(run: Path) -> str:
    return _outputs[run.name]


def card_row(card: str, label: str) -> list[float]:
    row = re.search(rf"^\| {re.escape(label)} \|(.*)\|$", card, re.M)
    assert row, card
    return [float(c) for c in row.group(1).split("|")]


# data-flow and hybrid winners: the same check on the zoo in tests/test_export_scores.py
@pytest.mark.parametrize("kind", ["ps"])
def test_exported_winner_reloads_and_reproduces_the_stored_validation_score(fitness, tiny_family, tmp_path, kind):
    from evomerge.evaluate.evaluator import evaluate_model
    from evomerge.evaluate.hf_backend import HFBackend
    from evomerge.export import pick_trial
    from evomerge.runtime.store import RunStore

    run = short_run(kind, tiny_family, tmp_path)
    store = RunStore.open(str(run))
    best, _ = pick_trial(store.info(), store.trials(), "best", "ppl")
    out = tmp_path / "export"
    result = CliRunner().invoke(app, ["export", str(run), "--objective", "ppl", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"exported trial {best.number}" in result.output

    backend = HFBackend.from_pretrained(out)   # AutoModelForCausalLM.from_pretrained, safetensors only
    recipe = yaml.safe_load((out / "recipe.yaml").read_text())
    layers = len(recipe["layers"]) if recipe["kind"] == "dataflow" else 4
    assert backend.model.config.num_hidden_layers == len(backend.model.model.layers) == layers
    val = evaluate_model(backend, ["tiny_ppl", "tiny_mc"], "validation", LIMIT)
    test = evaluate_model(backend, ["tiny_ppl", "tiny_mc"], "test")          # the whole held-out split
    # the reloaded checkpoint scores exactly what the run stored for this trial
    assert val["tiny_ppl"].score == pytest.approx(best.scores["tiny_ppl"], rel=1e-6)
    assert val["tiny_mc"].score == best.scores["tiny_mc"]

    card = (out / "README.md").read_text()
    assert ("| | stored (validation, during search, 12 items) | validation (at export, 12 items) "
            "| test (at export, 24 items) |") in card
    assert "the test split is scored in full" in card
    stored, card_val, card_test = card_row(card, "task `tiny_ppl`")
    assert stored == pytest.approx(best.scores["tiny_ppl"], abs=5e-5)
    assert card_val == pytest.approx(val["tiny_ppl"].score, abs=5e-5)
    assert card_test == pytest.approx(test["tiny_ppl"].score, abs=5e-5)
    assert card_row(card, "task `tiny_mc`")[2] == pytest.approx(test["tiny_mc"].score, abs=5e-5)
    assert card_row(card, "objective **ppl** (minimize)")[1] == pytest.approx(val["tiny_ppl"].score, abs=5e-5)
    assert "| searcher | cmaes |" in card and "| budget | 3 evaluations (3 finished at export) |" in card

    # the references the run scored before searching sit next to the winner, re-scored per split
    refs = store.references()
    e0 = f"parent {tiny_family['e0'].name}"
    assert set(refs) == {e0, f"parent {tiny_family['e1'].name}", "untuned task_arithmetic", "untuned ties",
                         "untuned dare_ties", "start"}
    assert card_row(card, f"**this model** (trial {best.number})")[2] == pytest.approx(test["tiny_ppl"].score, abs=5e-5)
    parent = evaluate_model(HFBackend.from_pretrained(tiny_family["e0"]), ["tiny_ppl"], "test")["tiny_ppl"].score
    stored, _, on_test = card_row(card, e0)
    assert stored == pytest.approx(refs[e0]["objectives"]["ppl"], abs=5e-5)
    assert on_test == pytest.approx(parent, rel=1e-4)
    assert "ppl on validation, winner vs references:" in run_output(run)

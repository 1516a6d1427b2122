"""`evomerge eval` and `evomerge zoo list` from the command line, on the built zoo."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from evomerge.cli import app

runner = CliRunner()


def test_eval_prints_a_table_and_writes_per_item_scores(zoo_dir, tmp_path):
    out = tmp_path / "scores.json"
    res = runner.invoke(app, ["eval", "zoo:words", "--task", "words", "--task", "count", "--task", "story_ppl",
                              "--split", "validation", "--limit", "12", "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert "words" in res.output and "perplexity" in res.output
    report = json.loads(out.read_text())
    assert report["split"] == "validation" and set(report["tasks"]) == {"words", "count", "story_ppl"}
    words = report["tasks"]["words"]
    assert len(words["item_scores"]) == 12 and words["score"] == sum(words["item_scores"]) / 12
    assert report["tasks"]["story_ppl"]["higher_is_better"] is False


def test_eval_errors_are_one_line_and_write_nothing(zoo_dir, tmp_path):
    out = tmp_path / "scores.json"
    res = runner.invoke(app, ["eval", "zoo:words", "--task", "no_such_task", "--json", str(out)])
    assert res.exit_code == 2 and "no_such_task" in res.output and not out.exists()
    res = runner.invoke(app, ["eval", str(tmp_path), "--task", "words"])
    assert res.exit_code == 2 and "config.json" in res.output
    res = runner.invoke(app, ["eval", "zoo:words", "--task", "words", "--backend", "torch"])
    assert res.exit_code == 2 and "does not score saved checkpoints (use --backend hf or vllm)" in res.output
    res = runner.invoke(app, ["eval", "zoo:words", "--task", "words", "--backend", "tpu"])
    assert res.exit_code == 2 and "unknown backend 'tpu'" in res.output


def test_eval_on_the_vllm_backend_gives_the_hf_scores(zoo_dir, tmp_path):
    scores = {}
    for backend in ("hf", "vllm"):
        out = tmp_path / f"{backend}.json"
        res = runner.invoke(app, ["eval", "zoo:math", "--task", "math", "--split", "validation", "--limit", "40",
                                  "--backend", backend, "--json", str(out)])
        assert res.exit_code == 0, res.output
        scores[backend] = json.loads(out.read_text())["tasks"]["math"]["item_scores"]
    assert scores["hf"] == scores["vllm"]


def test_zoo_list_shows_every_model(zoo_dir):
    res = runner.invoke(app, ["zoo", "list", "--zoo", str(zoo_dir)])
    assert res.exit_code == 0
    for name in ("base", "math", "words", "reverse", "count"):
        assert f"zoo:{name}" in res.output
    assert "missing" not in res.output

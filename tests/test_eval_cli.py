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


def test_zoo_list_shows_every_model(zoo_dir):
    res = runner.invoke(app, ["zoo", "list", "--zoo", str(zoo_dir)])
    assert res.exit_code == 0
    for name in ("base", "math", "words", "reverse", "count"):
        assert f"zoo:{name}" in res.output
    assert "missing" not in res.output

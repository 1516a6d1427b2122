"""A short `evomerge run` of the README demo experiment on the real zoo, then --resume of the
finished run: the search's best recipe already beats both parents on the target task, and the
parents the run scored as references are the parents scored directly."""

from __future__ import annotations

from pathlib import Path

import yaml

from evomerge.runtime.store import RunStore

ROOT = Path(__file__).resolve().parents[1]


def test_demo_experiment_on_the_zoo(zoo_dir, tmp_path):
    from typer.testing import CliRunner

    from evomerge.cli import app
    from evomerge.evaluate.evaluator import Evaluator
    from evomerge.runtime.pool import EvalJob, EvaluatorSpec

    exp = yaml.safe_load((ROOT / "experiments" / "demo.yaml").read_text())
    exp["search_space"] = str(ROOT / "search_spaces" / Path(exp["search_space"]).name)
    exp["budget"], exp["fitness"]["options"]["limit"] = 6, 100
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(exp))
    runner, runs = CliRunner(), str(tmp_path / "runs")
    res = runner.invoke(app, ["run", str(path), "--runs-dir", runs, "--no-progress"])
    assert res.exit_code == 0, res.stderr
    assert "demo: 6/6 evaluations (0 failed)" in res.stdout

    trials = RunStore.open(tmp_path / "runs" / "demo").trials()
    best = max(trials, key=lambda t: t.objectives["score"])
    spec = EvaluatorSpec(("zoo:math", "zoo:words"), ("math_words",), "validation", "hf", {"limit": 100})
    ev = Evaluator(spec)
    parents = [ev.evaluate(EvalJob(i, {"kind": "parameter", "method": "linear",
                                       "sources": [{"model": m, "parameters": {"weight": 1.0}}]})).scores["math_words"]
               for i, m in enumerate(("zoo:math", "zoo:words"))]
    assert best.objectives["score"] > max(parents), (best.objectives, parents)
    refs = RunStore.open(tmp_path / "runs" / "demo").references()
    assert [refs["parent math"]["value"], refs["parent words"]["value"]] == parents
    assert {"untuned task_arithmetic", "untuned ties", "untuned dare_ties", "start"} <= set(refs)
    assert "winner vs references:" in res.stdout and "best score so far:" in res.stdout

    again = runner.invoke(app, ["run", "--resume", str(tmp_path / "runs" / "demo"), "--no-progress"])
    assert again.exit_code == 0 and "6/6 evaluations" in again.stdout
    assert len(RunStore.open(tmp_path / "runs" / "demo").trials()) == 6

"""`evomerge run` with the real HF evaluator on tiny random checkpoints: parameter, data-flow and
hybrid spaces reach the engine and the scorer, and a minimize objective (perplexity) is stored
as such. (Scores are meaningless here: random models; the zoo runs live in the benchmarks.)"""

from __future__ import annotations

import pytest
import yaml

from evomerge.runtime.store import RunStore


@pytest.mark.parametrize("space", [
    {"kind": "parameter", "method": "ties", "groups": "blocks"},
    {"kind": "dataflow", "repetitions": 2},
    {"kind": "hybrid", "parameter": {"kind": "parameter", "method": "dare_ties"}, "dataflow": {"repetitions": 1}},
])
def test_hf_run_over_each_space(tiny_family, tmp_path, space):
    from typer.testing import CliRunner

    from evomerge.cli import app

    exp = {"name": f"hf-{space['kind']}",
           "models": {"base": str(tiny_family["base"]), "sources": [str(tiny_family["e0"]), str(tiny_family["e1"])]},
           "search_space": space,
           "fitness": {"tasks": ["story_ppl"], "options": {"limit": 4},
                       "objectives": [{"name": "ppl", "tasks": ["story_ppl"], "direction": "minimize"}]},
           "searcher": {"name": "random"}, "budget": 3, "seed": 1, "backend": "hf"}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(exp))
    res = CliRunner().invoke(app, ["run", str(path), "--runs-dir", str(tmp_path / "runs"), "--no-progress"])
    assert res.exit_code == 0, res.stderr
    store = RunStore.open(tmp_path / "runs" / exp["name"])
    trials = store.trials()
    assert [t.state for t in trials] == ["complete"] * 3, [t.error for t in trials]
    assert store.info().objectives == {"ppl": "minimize"}
    assert all(t.objectives["ppl"] > 1.0 and len(t.item_scores["story_ppl"]) == 4 for t in trials)
    if space["kind"] != "parameter":
        assert trials[0].recipe["kind"] == "dataflow"

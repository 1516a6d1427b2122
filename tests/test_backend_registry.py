"""Adding a backend is one class and one line in ``BACKENDS``: a minimal backend defined here,
registered for the test's duration, scores an `evomerge run` end to end (validation, preflight,
the evaluator, the store) with nothing else touched."""

from __future__ import annotations

import json

import yaml
from test_runtime_run import cli_inprocess

from evomerge.evaluate.backend import BACKENDS, Backend
from evomerge.evaluate.tasks import find_task_file
from evomerge.runtime.store import RunStore


class EchoBackend(Backend):
    """Answers every prompt with ten times the candidate's first source weight, rounded (the
    math task's answers are the numbers 0..18): its score says which recipe it was given."""

    @classmethod
    def from_spec(cls, spec) -> "EchoBackend":
        return cls()

    def load(self, recipe) -> None:
        self.answer = str(round(10 * recipe.sources[0].parameters["weight"]))

    def generate_until(self, requests):
        return [self.answer for _ in requests]

    def loglikelihood(self, requests):
        return [(0.0, False) for _ in requests]

    def loglikelihood_rolling(self, requests):
        return [(0.0, 1) for _ in requests]


def test_a_backend_is_one_class_and_one_registry_line(tmp_path, monkeypatch, zoo_dir):
    monkeypatch.setitem(BACKENDS, "echo", f"{__name__}:EchoBackend")        # the one line
    exp = {"name": "echo", "models": {"base": "zoo:base", "sources": ["zoo:math", "zoo:words"]},
           "search_space": {"kind": "parameter", "method": "linear", "weight": {"low": 0.0, "high": 1.8}},
           "fitness": {"tasks": ["math"], "options": {"limit": 40}},
           "searcher": {"name": "random"}, "budget": 2, "seed": 0, "backend": "echo"}
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(exp))
    res = cli_inprocess(["run", tmp_path / "exp.yaml", "--runs-dir", tmp_path / "runs"])
    assert res.returncode == 0, res.stderr
    answers = [json.loads(line)["answer"] for line in
               (find_task_file("math").parent / "data" / "math" / "validation.jsonl").read_text().splitlines()[:40]]
    trials = RunStore.open(tmp_path / "runs" / "echo").trials()
    assert len(trials) == 2 and all(t.state == "complete" for t in trials)
    for t in trials:
        said = str(round(10 * t.recipe["sources"][0]["parameters"]["weight"]))
        want = [float(a == said) for a in answers]
        assert t.item_scores["math"] == want and t.scores["math"] == sum(want) / 40
    assert trials[0].recipe != trials[1].recipe

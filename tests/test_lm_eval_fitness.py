"""lm-evaluation-harness tasks as fitness: references next to native tasks, one-line errors for
bad input, and the same scores as the native task through evomerge's own backends."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from evomerge.errors import ConfigError

pytest.importorskip("lm_eval")

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
LM_MATH_WORDS = {"lm_eval": "math_words", "include_path": str(ROOT / "fitness" / "lm_eval"),
                 "metric": "exact_match", "splits": {"validation": "validation", "test": "test"}}
RECIPE = ROOT / "experiments" / "recipes" / "zoo_math_words.yaml"


@pytest.fixture(autouse=True)
def _repo_root(monkeypatch):
    monkeypatch.chdir(ROOT)   # the task's data_files resolve against the current folder, as in lm_eval


def _experiment(tasks, split="validation"):
    from evomerge.experiment import parse_experiment

    data = {"name": "x", "models": {"sources": ["zoo:math"]}, "search_space": {"kind": "parameter", "method": "linear"},
            "fitness": {"tasks": tasks, "split": split}, "searcher": {"name": "random"}, "budget": 1}
    return parse_experiment(data, "exp.yaml", ROOT / "experiments")


def test_an_experiment_names_lm_eval_tasks_next_to_native_ones_and_stores_the_split_mapping():
    from evomerge.experiment import resolved

    ref = {**LM_MATH_WORDS, "include_path": "../fitness/lm_eval"}
    exp = _experiment(["math", ref])
    stored = resolved(exp)["fitness"]
    assert stored["tasks"][1]["include_path"] == str(ROOT / "fitness" / "lm_eval")   # against the file's folder
    assert stored["tasks"][1]["splits"] == {"validation": "validation", "test": "test"}
    assert stored["objectives"][0]["tasks"] == {"math": 1.0, "lm_eval:math_words": 1.0}


@pytest.mark.parametrize("change, message", [
    ({"splits": {"validation": "validation"}}, "fitness.tasks[0].splits: map test"),
    ({"splits": {"validation": "test", "test": "test"}}, "the held-out split must differ"),
    ({"metric": None}, "fitness.tasks[0].metric"),
    ({"num_fewshots": 2}, "fitness.tasks[0].num_fewshots: unknown field"),
])
def test_a_malformed_reference_is_one_line_naming_the_field(change, message):
    ref = {k: v for k, v in {**LM_MATH_WORDS, **change}.items() if v is not None}
    with pytest.raises(ConfigError, match="^exp.yaml: .*") as err:
        _experiment([ref])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_the_search_split_must_be_mapped():
    with pytest.raises(ConfigError, match="map the search split 'train'"):
        _experiment([LM_MATH_WORDS], split="train")


def test_naming_only_native_tasks_never_imports_lm_eval():
    code = ("import sys; from evomerge.experiment import load_experiment; "
            "from evomerge.evaluate.task_loading import load_task_ref; "
            "load_experiment('experiments/demo.yaml'); load_task_ref('math_words'); "
            "print('lm_eval' in sys.modules)")
    out = subprocess.run([PY, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr


def _write_task(folder: Path, **fields) -> Path:
    base = yaml.safe_load((ROOT / "fitness" / "lm_eval" / "math_words.yaml").read_text())
    base.update(fields)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{base['task']}.yaml").write_text(yaml.safe_dump(base))
    return folder


def _load(**ref):
    from evomerge.evaluate.task_loading import load_task_ref

    return load_task_ref({**LM_MATH_WORDS, **ref}, "fitness.tasks[1]")


def test_bad_lm_eval_tasks_fail_before_anything_runs_with_one_line(tmp_path):
    cases = [
        (dict(lm_eval="no_such_task"), "lm_eval: 'no_such_task': unknown task in include_path"),
        (dict(include_path=str(tmp_path / "missing")), f"include_path: {tmp_path / 'missing'} is not a folder"),
        (dict(include_path=str(_write_task(tmp_path / "hub", task="gsm8k_like", dataset_path="openai/gsm8k")),
              lm_eval="gsm8k_like"),
         "dataset 'openai/gsm8k' lives on a hub and nothing is downloaded here; point it at local files: "
         "in a copy of the task YAML under include_path, set dataset_path: json and dataset_kwargs: {data_files:"),
        (dict(metric="bleu"), "metric: 'bleu' is not produced by lm-eval task 'math_words' (it gives exact_match)"),
        (dict(metric="exact_match,flexible"), "filter 'flexible' is not one of task 'math_words''s (strip)"),
        (dict(splits={"validation": "validation", "test": "heldout"}), "splits.test: 'heldout' is not a split"),
        (dict(include_path=str(_write_task(tmp_path / "sampled", task="sampled",
                                           generation_kwargs={"until": ["."], "do_sample": True})), lm_eval="sampled"),
         "evomerge scores greedily"),
    ]
    for ref, message in cases:
        with pytest.raises(ConfigError) as err:
            _load(**ref)
        line = str(err.value)
        assert line.startswith("fitness.tasks[1]: ") and message in line and "\n" not in line, (ref, line)


def test_a_missing_data_file_names_the_file_and_where_it_was_looked_for(tmp_path):
    folder = _write_task(tmp_path / "t", task="gone", dataset_kwargs={"data_files": {"validation": "nope/v.jsonl",
                                                                                      "test": "nope/t.jsonl"}})
    with pytest.raises(ConfigError, match=r"data_files.test: nope/t.jsonl not found \(relative paths resolve "
                                          r"against the current folder"):
        _load(include_path=str(folder), lm_eval="gone")


def test_without_the_extra_the_reference_says_how_to_install_it():
    code = ("import sys; sys.modules['lm_eval'] = None\n"
            "from evomerge.evaluate.task_loading import load_task_ref\n"
            "try:\n    load_task_ref({'lm_eval': 'math_words', 'metric': 'exact_match',"
            " 'splits': {'validation': 'validation', 'test': 'test'}}, 'fitness.tasks[0]')\n"
            "except Exception as e:\n    print(type(e).__name__, e)")
    out = subprocess.run([PY, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == ("ConfigError fitness.tasks[0]: lm-eval task 'math_words' needs "
                                  "lm-evaluation-harness, which is not installed: "
                                  "pip install \"evomerge[lm-eval]\""), out.stderr


class _Counting:
    """A backend wrapper counting loads and scoring batches (the weights stay where they are)."""

    def __init__(self, backend):
        self.backend, self.loads, self.batches = backend, 0, 0

    def load(self, recipe):
        self.loads += 1
        return self.backend.load(recipe)

    def __getattr__(self, name):
        if name not in ("loglikelihood", "loglikelihood_rolling", "generate_until"):
            return getattr(self.backend, name)

        def batch(requests):
            self.batches += 1
            return getattr(self.backend, name)(requests)
        return batch


def _same_items(backend_name, zoo_dir, split, limit, extra=None):
    """Native math_words and lm-eval math_words on the zoo's merged model, through one Evaluator."""
    from evomerge.evaluate.evaluator import Evaluator
    from evomerge.mergekit_config import load_any_recipe
    from evomerge.runtime.pool import EvalJob, EvaluatorSpec

    spec = EvaluatorSpec(("zoo:base", "zoo:math", "zoo:words"), ("math_words", LM_MATH_WORDS), split, backend_name,
                         {"limit": limit, **(extra or {})})
    ev = Evaluator(spec)
    try:
        ev.backend = counting = _Counting(ev.backend)
        result = ev.evaluate(EvalJob(0, load_any_recipe(RECIPE).to_dict()))
    finally:
        close = getattr(ev.backend.backend, "close", None)
        if close:
            close()
    assert result.error is None, result.error
    assert counting.loads == 1 and counting.batches == 2   # one materialization, one batch per task
    return result


def test_lm_eval_math_words_scores_every_item_as_the_native_task_on_hf(zoo_dir):
    result = _same_items("hf", zoo_dir, "test", 300)
    native, lm = result.item_scores["math_words"], result.item_scores["lm_eval:math_words"]
    assert len(native) == len(lm) == 300 and native == lm
    assert 0.2 < result.scores["math_words"] == result.scores["lm_eval:math_words"] < 1.0


@pytest.mark.vllm
def test_lm_eval_math_words_scores_every_item_as_the_native_task_on_vllm(zoo_dir):
    pytest.importorskip("vllm")
    result = _same_items("vllm", zoo_dir, "test", 300, {"kv_cache_gib": 1})
    native, lm = result.item_scores["math_words"], result.item_scores["lm_eval:math_words"]
    assert len(native) == len(lm) == 300 and native == lm
    assert 0.2 < result.scores["lm_eval:math_words"] < 1.0


def test_evomerge_eval_takes_the_same_reference(zoo_dir, tmp_path):
    import json

    from typer.testing import CliRunner

    from evomerge.cli import app

    ref = yaml.safe_dump(LM_MATH_WORDS, default_flow_style=True, width=10_000).strip()
    out = tmp_path / "scores.json"
    res = CliRunner().invoke(app, ["eval", "zoo:words", "--task", ref, "--task", "math_words", "--split", "validation",
                                   "--limit", "60", "--json", str(out)])
    assert res.exit_code == 0, res.output
    report = json.loads(out.read_text())["tasks"]
    assert report["lm_eval:math_words"]["item_scores"] == report["math_words"]["item_scores"]
    bad = CliRunner().invoke(app, ["eval", "zoo:words", "--task", ref.replace("exact_match", "bleu")])
    assert bad.exit_code == 2 and "metric: 'bleu' is not produced" in bad.output


def test_mixed_search_resumes_after_sigkill_exports_and_plain_lm_eval_gives_the_card_score(zoo_dir, tmp_path):
    """experiments/mixed_lm_eval.yaml, shortened: killed mid-run, resumed to the end, the winner
    exported, and `lm_eval --model hf` on the export reproduces the card's held-out score."""
    import json
    import signal

    from helpers_runtime import finished, wait_for

    from evomerge.runtime.store import RunStore

    exp = yaml.safe_load((ROOT / "experiments" / "mixed_lm_eval.yaml").read_text())
    exp["search_space"] = str(ROOT / "search_spaces" / "ps_dare_ties.yaml")
    exp["fitness"]["tasks"][1]["include_path"] = str(ROOT / "fitness" / "lm_eval")
    exp["budget"], exp["fitness"]["options"]["limit"], limit = 6, 60, 60
    path = tmp_path / "mixed.yaml"
    path.write_text(yaml.safe_dump(exp))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "EVOMERGE_ZOO": str(zoo_dir)}
    evomerge = [PY, "-m", "evomerge.cli"]
    runs = tmp_path / "runs"
    proc = subprocess.Popen(evomerge + ["run", str(path), "--runs-dir", str(runs), "--no-progress"], cwd=ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    db = runs / "mixed-lm-eval" / "store.db"

    def two_done() -> bool:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        return finished(db) >= 2

    wait_for(two_done, 300, "2 evaluations stored", every=0.2)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert 2 <= finished(db) < 6
    from typer.testing import CliRunner

    from evomerge.cli import app

    res = CliRunner().invoke(app, ["run", "--resume", str(runs / "mixed-lm-eval"), "--no-progress"])
    assert res.exit_code == 0 and "6/6 evaluations (0 failed)" in res.stdout, res.output
    trials = RunStore.open(runs / "mixed-lm-eval").trials()
    assert [len(t.item_scores.get(k, [])) for t in trials for k in ("math", "lm_eval:math_words")] == [limit] * 12

    out = tmp_path / "winner"
    res = CliRunner().invoke(app, ["export", str(runs / "mixed-lm-eval"), "--out", str(out),
                                   "--test-limit", str(limit)])  # the card's test score on the first `limit` items
    assert res.exit_code == 0, res.output
    card = (out / "README.md").read_text()
    row = next(line for line in card.splitlines() if line.startswith("| task `lm_eval:math_words`"))
    card_test = float(row.strip("| ").split("|")[-1])
    assert "lm_eval --model hf --model_args pretrained=THIS_FOLDER" in card
    res = subprocess.run([PY, "-m", "lm_eval", "--model", "hf", "--model_args", f"pretrained={out}",
                          "--include_path", "fitness/lm_eval", "--tasks", "math_words", "--limit", str(limit),
                          "--output_path", str(tmp_path / "lm_eval_out")],
                         cwd=ROOT, env={**env, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"},
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    (result_file,) = (tmp_path / "lm_eval_out").rglob("results_*.json")
    plain = json.loads(result_file.read_text())["results"]["math_words"]["exact_match,strip"]
    assert 0 < round(plain, 4) == card_test, (plain, card_test)


def test_a_run_naming_a_bad_lm_eval_task_stops_with_one_line_and_writes_nothing(zoo_dir, tmp_path):
    from typer.testing import CliRunner

    from evomerge.cli import app

    exp = yaml.safe_load((ROOT / "experiments" / "mixed_lm_eval.yaml").read_text())
    exp["search_space"] = str(ROOT / "search_spaces" / "ps_dare_ties.yaml")
    exp["fitness"]["tasks"][1].update(include_path=str(ROOT / "fitness" / "lm_eval"), lm_eval="math_wordz")
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(exp))
    res = CliRunner().invoke(app, ["run", str(path), "--runs-dir", str(tmp_path / "runs"), "--no-progress"])
    assert res.exit_code == 2, res.output
    last = res.output.strip().splitlines()[-1]
    assert last.startswith("error: fitness.tasks[1]: lm_eval: 'math_wordz': unknown task"), last
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("name, metric", [("count", "acc"), ("story_ppl", "word_perplexity")])
def test_multiple_choice_and_rolling_lm_eval_tasks_score_like_the_native_ones(zoo_dir, name, metric):
    """The adapter's loglikelihood and loglikelihood_rolling paths: fitness/lm_eval/count.yaml
    (multiple choice) and story_ppl.yaml (word perplexity; the zoo's words are its tokens)."""
    from evomerge.evaluate.hf_backend import HFBackend
    from evomerge.evaluate.task_loading import load_task_ref

    backend = HFBackend.from_pretrained("zoo:count")
    native = load_task_ref(name).evaluate(backend, "validation", 60)
    lm = _load(lm_eval=name, metric=metric).evaluate(backend, "validation", 60)
    assert lm.item_scores == pytest.approx(native.item_scores, abs=1e-9) and len(lm.item_scores) == 60
    assert lm.score == pytest.approx(native.score, rel=1e-9)
    assert lm.higher_is_better == native.higher_is_better

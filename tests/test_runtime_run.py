"""`evomerge run`: the loop end to end on the analytic stand-in evaluator, resume after SIGKILL
and Ctrl-C, and invalid experiment files rejected with one line and nothing written."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers_runtime import finished, wait_for

from evomerge.runtime.simulated import SimulatedEvaluator
from evomerge.runtime.store import RunStore

TESTS = Path(__file__).parent
EVOMERGE = [sys.executable, "-m", "evomerge.cli"]
SIM = "evomerge.runtime.simulated:SimulatedEvaluator"
# children import this checkout's evomerge (not whichever one the environment installed)
ENV = {**os.environ, "PYTHONPATH": str(TESTS.parent), "OMP_NUM_THREADS": "1"}


def experiment(name: str, budget: int = 24, searcher: str = "cmaes", sleep: float = 0.0, **extra) -> dict:
    exp = {
        "name": name,
        "models": {"base": "zoo:base", "sources": ["zoo:a", "zoo:b"]},
        "search_space": {"kind": "parameter", "method": "dare_ties", "weight": {"low": 0.0, "high": 2.0}},
        "fitness": {"tasks": ["sphere"], "options": {"sleep": sleep}},
        "searcher": {"name": searcher, "options": {"population_size": 6} if searcher == "cmaes" else {}},
        "budget": budget, "seed": 3, "backend": SIM,
    }
    exp.update(extra)
    return exp


def write(tmp: Path, exp: dict, fname: str = "exp.yaml") -> Path:
    path = tmp / fname
    path.write_text(yaml.safe_dump(exp))
    return path


def cli(args: list, cwd: Path, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(EVOMERGE + [str(a) for a in args] + ["--no-progress"], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=240, **kw)


def cli_inprocess(args: list) -> subprocess.CompletedProcess:
    """The CLI in this process (fast): exit code and stderr as a CompletedProcess."""
    from typer.testing import CliRunner

    from evomerge.cli import app

    res = CliRunner().invoke(app, [str(a) for a in args] + ["--no-progress"])
    return subprocess.CompletedProcess(args, res.exit_code, res.stdout, res.stderr)


def fresh(tmp: Path, name: str, budget: int = 10):
    """A new store, session and in-process pool for a CMA-ES run of `budget` evaluations."""
    from evomerge.experiment import Experiment
    from evomerge.runtime.inprocess import InProcessPool
    from evomerge.runtime.session import build_session
    from evomerge.runtime.store import sqlite_url

    session = build_session(Experiment.model_validate(experiment(name, budget=budget)))
    store = RunStore.create(sqlite_url(tmp / f"{name}.db"), name, {}, "cmaes", {"score": "maximize"}, budget)
    return store, session, InProcessPool(session.spec, SimulatedEvaluator(session.spec))


def state(run_dir: Path):
    store = RunStore.open(run_dir)
    trials = [(t.number, t.state, t.genome, t.objectives, t.error) for t in store.trials()]
    return trials, store.searcher_state()


def test_run_stores_every_evaluation_and_reports_the_best(tmp_path):
    res = cli(["run", write(tmp_path, experiment("e2e", budget=12, fitness={"tasks": ["sphere"],
                                                                          "options": {"fail_every": 5}}))], tmp_path)
    assert res.returncode == 0, res.stderr
    assert "e2e: 12/12 evaluations (2 failed)" in res.stdout and "best: candidate" in res.stdout
    trials, saved = state(tmp_path / "runs" / "e2e")
    assert [t[1] for t in trials] == ["complete"] * 4 + ["failed"] + ["complete"] * 4 + ["failed"] + ["complete"] * 2
    assert "synthetic failure of candidate 4" in trials[4][4]
    assert saved[1]["searcher"] == "cmaes"
    assert json.loads((tmp_path / "runs" / "e2e" / "run.json").read_text())["name"] == "e2e"
    again = cli(["run", tmp_path / "exp.yaml"], tmp_path)
    assert again.returncode == 2 and "exists" in again.stderr and "--resume" in again.stderr


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_killed_or_interrupted_run_resumes_to_the_same_state(tmp_path, sig):
    """SIGKILL at a random moment, or Ctrl-C (exit 130 and how to resume), then --resume."""
    budget, searcher = 20, "cmaes"
    ref_dir, cut_dir = tmp_path / "ref", tmp_path / "cut"
    ref_dir.mkdir(), cut_dir.mkdir()
    ref = cli_inprocess(["run", write(ref_dir, experiment("r", budget, searcher)), "--runs-dir", ref_dir / "runs"])
    assert ref.returncode == 0, ref.stderr

    exp = write(cut_dir, experiment("r", budget, searcher, sleep=0.05))
    proc = subprocess.Popen(EVOMERGE + ["run", str(exp), "--no-progress"], cwd=cut_dir, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    db = cut_dir / "runs" / "r" / "store.db"

    def a_third_done() -> bool:                # kill a third of the way in
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        return finished(db) >= budget // 3

    wait_for(a_third_done, 120, "a third of the budget stored")
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and "evomerge run --resume" in err, err
    else:
        assert proc.returncode == -signal.SIGKILL
    done_at_kill = sum(t[1] != "running" for t in state(cut_dir / "runs" / "r")[0])
    assert done_at_kill < budget
    res = cli(["run", "--resume", "runs/r"], cut_dir)
    assert res.returncode == 0, res.stderr
    assert state(cut_dir / "runs" / "r") == state(ref_dir / "runs" / "r")


def test_resume_replays_events_after_the_last_saved_state(tmp_path):
    """A kill after a result's state flip but before the searcher state was saved."""
    from evomerge.experiment import Experiment
    from evomerge.runtime.loop import run_loop
    from evomerge.runtime.session import build_session

    store, session, pool = fresh(tmp_path, "whole")
    run_loop(store, session, pool, 10, show_progress=False)
    want = [(t.genome, t.objectives) for t in store.trials()]

    store, session, pool = fresh(tmp_path, "cut")
    run_loop(store, session, pool, 4, show_progress=False)
    saved = store.searcher_state()
    run_loop(store, session, pool, 6, show_progress=False)        # 2 more, then "lose" their state saves
    store.save_searcher_state(saved[1], saved[0])
    store2 = RunStore.open(store.url)
    session2 = build_session(Experiment.model_validate(experiment("cut", budget=10)))
    run_loop(store2, session2, pool, 10, show_progress=False)
    assert [(t.genome, t.objectives) for t in store2.trials()] == want


@pytest.mark.parametrize("change,match", [
    (lambda e: e.update(budget=0), r"exp.yaml: budget: Input should be greater than or equal to 1"),
    (lambda e: e.pop("models"), r"models.sources: at least one source model is required"),
    (lambda e: e.pop("budget"), r"exp.yaml: budget: required field is missing"),
    (lambda e: e.update(searcher={"name": "annealing"}), r"searcher.name: unknown searcher 'annealing'"),
    (lambda e: e["searcher"].update(options={"sigma": 1}), r"searcher.options.sigma: unknown option"),
    (lambda e: e.update(backend="tpu"), r"exp.yaml: backend: 'tpu' is not one of"),
    (lambda e: e["fitness"].update(objectives=[{"name": "x", "tasks": ["nope"]}]),
     r"fitness: objectives\[0\].tasks.nope: not one of the fitness tasks"),
    (lambda e: e["search_space"].update(density={"low": 0.5, "high": 2.0}), r"search_space: density"),
    (lambda e: e.update(search_space="missing_space.yaml"), r"missing_space.yaml: cannot read"),
    (lambda e: e.update(colour="blue"), r"exp.yaml: colour: unknown field"),
])
def test_invalid_experiments_fail_with_one_line_and_write_nothing(tmp_path, change, match):
    exp = experiment("bad")
    change(exp)
    res = cli_inprocess(["run", write(tmp_path, exp), "--runs-dir", tmp_path / "runs"])
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert re.search(match, lines[0]), lines[0]
    assert not (tmp_path / "runs").exists()


def test_malformed_yaml_names_the_file(tmp_path):
    (tmp_path / "exp.yaml").write_text("name: x\nmodels: [unclosed\n")
    res = cli_inprocess(["run", tmp_path / "exp.yaml", "--runs-dir", tmp_path / "runs"])
    assert res.returncode == 2 and "exp.yaml: malformed YAML" in res.stderr
    assert not (tmp_path / "runs").exists()


def test_from_scratch_digits_experiment_runs(tmp_path):
    """experiments/m2n2_digits.yaml wired end to end (few evaluations; the real run is longer)."""
    exp = yaml.safe_load((TESTS.parent / "experiments" / "m2n2_digits.yaml").read_text())
    exp["budget"] = 8
    res = cli_inprocess(["run", write(tmp_path, exp), "--runs-dir", tmp_path / "runs"])
    assert res.returncode == 0, res.stderr
    trials = RunStore.open(tmp_path / "runs" / "m2n2-digits").trials()
    assert len(trials) == 8 and all(t.state == "complete" for t in trials)
    assert len(trials[0].item_scores["digits"]) == 900 and 0.0 <= trials[0].scores["digits"] <= 1.0


def test_initial_recipe_seeds_the_search(tmp_path):
    """An initial recipe (ours or a mergekit config) becomes the start point and first candidate."""
    from evomerge.experiment import load_experiment
    from evomerge.runtime.session import build_session

    ours = {"kind": "parameter", "method": "dare_ties", "base": "zoo:base",
            "sources": [{"model": "zoo:a", "parameters": {"weight": 1.25, "density": 0.75}},
                        {"model": "zoo:b", "parameters": {"weight": 0.5, "density": 0.25}}]}
    mergekit = {"merge_method": "dare_ties", "base_model": "zoo:base", "dtype": "float32",
                "models": [{"model": "zoo:a", "parameters": {"weight": 1.25, "density": 0.75}},
                           {"model": "zoo:b", "parameters": {"weight": 0.5, "density": 0.25}}]}
    for name, recipe in (("ours.yaml", ours), ("mk.yaml", mergekit)):
        (tmp_path / name).write_text(yaml.safe_dump(recipe))
        path = write(tmp_path, experiment("init", searcher="random", initial_recipe=name), f"exp_{name}")
        session = build_session(load_experiment(path))
        first = session.searcher.ask(1)[0]
        assert first.x.tolist() == [1.25, 0.75, 0.5, 0.25], name
        assert session.space.recipe_dict(first.x)["sources"][1]["parameters"] == {"weight": 0.5, "density": 0.25}


def test_in_process_pool_fails_a_job_past_its_timeout_and_goes_on():
    from evomerge.runtime.inprocess import InProcessPool
    from evomerge.runtime.pool import EvalJob, EvaluatorSpec

    recipe = {"sources": [{"parameters": {"weight": 0.7}}]}
    pool = InProcessPool(EvaluatorSpec(sources=(), tasks=("t",), backend=SIM))
    pool.submit(EvalJob(0, {**recipe, "simulate": {"sleep": 600}}, timeout_s=0.3))
    (late,) = pool.wait()                               # a missed timeout: no error, after 600 s
    assert late.error == "timeout after 0.3s" and late.candidate_id == 0
    pool.submit(EvalJob(1, recipe, timeout_s=0.3))
    (ok,) = pool.wait()
    assert ok.error is None and ok.scores == {"t": 0.0}
    assert signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, signal.default_int_handler, None)


def test_summary_shows_how_the_best_climbed_and_the_winner_next_to_its_references(tmp_path):
    exp = experiment("refs", budget=12, references=["parents", "untuned", "start"])
    res = cli_inprocess(["run", write(tmp_path, exp), "--runs-dir", tmp_path / "runs"])
    assert res.returncode == 0, res.stderr
    store = RunStore.open(tmp_path / "runs" / "refs")
    refs = store.references()
    assert list(refs) == ["parent a", "parent b", "untuned task_arithmetic", "untuned ties", "untuned dare_ties", "start"]
    # the simulated sphere scores each recipe number -(v - 0.7)^2: a parent is one weight of 1
    assert refs["parent a"]["value"] == pytest.approx(-0.09) and refs["start"]["items"] == {"sphere": 4}
    assert all(t.number >= 0 for t in store.trials()) and len(store.trials()) == 12
    best = max(t.objectives["score"] for t in store.trials())
    climb = next(line for line in res.stdout.splitlines() if line.startswith("best score so far:"))
    assert climb.split(" -> ")[-1].startswith(f"{best:.4f}")
    assert "score on validation, winner vs references:" in res.stdout
    assert re.search(r"^  parent a +-0\.0900$", res.stdout, re.M)


def test_ctrl_c_right_after_a_tell_resumes_to_the_same_state(tmp_path):
    """Ctrl-C landing between the searcher's tell and the loop's bookkeeping (as a signal can):
    the interrupted loop must not save a searcher state that the replayed events tell again."""
    from evomerge.experiment import Experiment
    from evomerge.runtime.loop import run_loop
    from evomerge.runtime.session import build_session

    store, session, pool = fresh(tmp_path, "whole")
    run_loop(store, session, pool, 10, show_progress=False)
    want = [(t.genome, t.objectives) for t in store.trials()]

    store, session, pool = fresh(tmp_path, "cut")
    tell, told = session.searcher.tell, []

    def tell_then_ctrl_c(cid, outcome):
        tell(cid, outcome)
        told.append(cid)
        if len(told) == 7:                     # mid-generation (population 6)
            raise KeyboardInterrupt

    session.searcher.tell = tell_then_ctrl_c
    with pytest.raises(KeyboardInterrupt):
        run_loop(store, session, pool, 10, show_progress=False)
    store2 = RunStore.open(store.url)
    run_loop(store2, build_session(Experiment.model_validate(experiment("cut", budget=10))), pool, 10,
             show_progress=False)
    assert [(t.genome, t.objectives) for t in store2.trials()] == want

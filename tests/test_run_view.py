"""What a user sees of a run: status lines when the output is not a terminal, start-up time
(printed, stored, counted by `status`), and the Pareto front's summary at the end."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from evomerge.runtime.store import RunStore
from test_runtime_run import TESTS, experiment, write


def _invoke(args: list, env: dict | None = None):
    from typer.testing import CliRunner

    from evomerge.cli import app

    return CliRunner().invoke(app, [str(a) for a in args], env=env)


def test_a_run_without_a_terminal_prints_status_lines_and_its_start_up(tmp_path):
    sys.path.insert(0, str(TESTS))
    exp = write(tmp_path, experiment("logged", budget=6, fitness={"tasks": ["sphere"], "options": {"fail_every": 4}}))
    res = _invoke(["run", exp, "--runs-dir", tmp_path / "runs"], env={"EVOMERGE_STATUS_EVERY": "0"})
    assert res.exit_code == 0, res.stderr
    lines = res.stderr.splitlines()
    assert re.fullmatch(r"logged: started in \d+\.\d s \(checks, workers, sources loaded\); .*runs/logged", lines[0])
    status = [ln for ln in lines if re.match(r"\d\d:\d\d:\d\d logged: ", ln)]
    assert len(status) == 6, lines
    assert re.fullmatch(r"\d\d:\d\d:\d\d logged: 4/6 evaluations, 1 failed, best -?\d\.\d+(e-\d+)?, "
                        r"\d+\.\d/min, ETA \d+m\d\ds", status[3]), status[3]
    info = RunStore.open(tmp_path / "runs" / "logged").info()
    assert len(info.startup_s) == 1 and 0 <= info.startup_s[0] < 60
    shown = _invoke(["status", tmp_path / "runs" / "logged"])
    assert re.search(r"start-up\s+│ \d+\.\d s: checks, workers, sources", shown.stdout), shown.stdout
    assert "(start-up included)" in shown.stdout


def test_quiet_with_no_progress_and_status_lines_spaced_by_the_interval(tmp_path):
    sys.path.insert(0, str(TESTS))
    exp = write(tmp_path, experiment("quiet", budget=4))
    res = _invoke(["run", exp, "--runs-dir", tmp_path / "runs", "--no-progress"], env={"EVOMERGE_STATUS_EVERY": "0"})
    assert res.exit_code == 0 and not re.search(r"\d\d:\d\d:\d\d quiet:", res.stderr)
    res = _invoke(["run", "--resume", tmp_path / "runs" / "quiet", write(tmp_path, experiment("quiet", budget=8))],
                  env={"EVOMERGE_STATUS_EVERY": "3600"})
    status = [ln for ln in res.stderr.splitlines() if re.match(r"\d\d:\d\d:\d\d quiet: ", ln)]
    assert res.exit_code == 0 and [s.split(": ", 1)[1].split(",")[0] for s in status] == ["8/8 evaluations"]
    assert len(RunStore.open(tmp_path / "runs" / "quiet").info().startup_s) == 2


def test_multi_objective_run_ends_with_the_front_and_how_to_pick(tmp_path):
    sys.path.insert(0, str(TESTS))
    fitness = {"tasks": ["up", "down"], "objectives": [{"name": "up", "tasks": ["up"]},
                                                       {"name": "down", "tasks": ["down"], "direction": "minimize"}]}
    exp = write(tmp_path, experiment("two", budget=6, searcher="random", fitness=fitness))
    res = _invoke(["run", exp, "--runs-dir", tmp_path / "runs", "--no-progress"])
    assert res.exit_code == 0, res.stderr
    last = res.stdout.strip().splitlines()[-1]
    # "down" is minimized but scores the same as "up" (maximized): every candidate is on the front
    assert last.startswith("Pareto front: 6 candidates (0, 1, 2, 3, 4, 5) trading off up, down; ")
    assert "best" not in last.split(";")[0] and "export" in last and "--objective NAME" in last
    assert re.search(r"candidate \d with up = .*; candidate \d with down = ", last)
    # the parents and the start point were scored once as references, marked on the Pareto plot
    baselines = RunStore.open(tmp_path / "runs" / "two").info().baselines
    assert list(baselines) == ["parent a", "parent b", "start"]
    assert set(baselines["start"]["objectives"]) == {"up", "down"}
    assert len(RunStore.open(tmp_path / "runs" / "two").trials()) == 6      # references use no budget


def test_a_multi_objective_run_compares_with_its_parents_and_start_point_by_default():
    from evomerge.experiment import Experiment
    from evomerge.runtime.references import reference_recipes
    from evomerge.runtime.session import build_session

    fitness = {"tasks": ["up", "down"], "objectives": [{"name": "up", "tasks": ["up"]},
                                                       {"name": "down", "tasks": ["down"], "direction": "minimize"}]}
    session = build_session(Experiment.model_validate(experiment("b", searcher="random", fitness=fitness)))
    recipes = reference_recipes(session)
    assert list(recipes) == ["parent a", "parent b", "start"]
    assert recipes["parent a"] == {"kind": "parameter", "method": "linear",
                                   "sources": [{"model": "zoo:a", "parameters": {"weight": 1.0}}]}
    assert recipes["start"] == session.space.recipe_dict(session.space.x0)
    assert reference_recipes(build_session(Experiment.model_validate(experiment("one")))) == {}


def test_genes_are_optuna_parameters_with_their_ranges(tmp_path):
    """Plain Optuna (and optuna-dashboard) sees each gene as a parameter named from the space."""
    import optuna
    from optuna.distributions import FloatDistribution

    sys.path.insert(0, str(TESTS))
    exp = write(tmp_path, experiment("genes", budget=4))
    assert _invoke(["run", exp, "--runs-dir", tmp_path / "runs", "--no-progress"]).exit_code == 0
    store = RunStore.open(tmp_path / "runs" / "genes")
    study = optuna.load_study(study_name="genes", storage=store.url)
    assert len(study.trials) == 4
    for trial, rec in zip(study.trials, store.trials()):
        assert list(trial.params) == ["weight_a", "density_a", "weight_b", "density_b"]
        assert list(trial.params.values()) == [min(max(v, lo), hi) for v, lo, hi in
                                               zip(rec.genome, [0, 0.1, 0, 0.1], [2, 1, 2, 1])]
        assert trial.distributions["weight_a"] == FloatDistribution(0.0, 2.0)
        assert trial.distributions["density_b"] == FloatDistribution(0.1, 1.0)


def test_gene_labels_of_every_space_are_unique_and_readable():
    import numpy as np

    from evomerge.genome import Models
    from evomerge.genome.dataflow import DataflowSpace, DataflowSpec
    from evomerge.genome.parameter import ParameterSpace, ParameterSpec

    dfs = DataflowSpace(DataflowSpec.model_validate({"repetitions": 2}), [{"model": "zoo:math"}, {"model": "/x/words"}], [2, 3])
    labels = dfs.gene_labels()
    assert len(labels) == dfs.dim == len(set(labels)) == 2 * (2 + 3) + 4
    assert labels[:3] == ["slot0_math_L0", "slot1_math_L1", "slot2_words_L0"]
    assert labels[-4:] == ["scale_math_to_math", "scale_math_to_words", "scale_words_to_math", "scale_words_to_words"]
    ps = ParameterSpace(ParameterSpec.model_validate({"method": "ties"}), Models(sources=("zoo:a", "zoo:a"), base="zoo:base"))
    assert ps.gene_labels() == ["weight_s0", "density_s0", "weight_s1", "density_s1"]
    assert np.asarray(ps.lower).size == len(ps.gene_labels())


def test_vllm_log_lines_go_to_the_run_folder(tmp_path, monkeypatch, capsys):
    """The logging config vLLM reads (VLLM_LOGGING_CONFIG_PATH) at import and at each engine
    start: everything into the log, errors also on stderr; the log moves into the run folder."""
    import json
    import logging
    import logging.config
    import os

    from evomerge.runtime.engine_logs import CONFIG_ENV, EngineLogs

    monkeypatch.delenv(CONFIG_ENV, raising=False)
    monkeypatch.delenv("VLLM_CONFIGURE_LOGGING", raising=False)
    logs = EngineLogs.start(None)
    try:
        logging.config.dictConfig(json.loads(Path(os.environ[CONFIG_ENV]).read_text()))  # what vLLM does
        log = logging.getLogger("vllm.engine.core")
        log.info("engine started")
        log.warning("a warning")
        log.error("an error")
        run_dir = tmp_path / "runs" / "r"
        run_dir.mkdir(parents=True)
        moved = logs.move_into(run_dir)
        log.info("candidate swapped")
        text = moved.read_text()
        assert moved == run_dir / "vllm.log"
        assert [ln.split(": ", 1)[1] for ln in text.splitlines()] == ["engine started", "a warning", "an error",
                                                                            "candidate swapped"]
        err = capsys.readouterr()
        assert "engine started" not in err.out + err.err and "a warning" not in err.err
        assert err.err.count("an error") == 1
    finally:
        logs.close()
    assert CONFIG_ENV not in os.environ
    monkeypatch.setenv("VLLM_CONFIGURE_LOGGING", "0")
    assert EngineLogs.start(None) is None

"""Bad moments and bad inputs: a run killed while being created resumes or restarts; commands
that read never create or change a file; every bad input is one line naming the file or field,
a non-zero exit and nothing left behind."""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from evomerge.runtime.store import RunStore
from test_runtime_run import EVOMERGE, TESTS, cli_inprocess, experiment, write

ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(TESTS.parent)]), "OMP_NUM_THREADS": "1"}


def cli(args: list, cwd: Path) -> subprocess.CompletedProcess:
    """The CLI in a fresh process, on this checkout's code."""
    return subprocess.run(EVOMERGE + [str(a) for a in args] + ["--no-progress"], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=240)

KILL_AT = {  # where, inside the creation window, the process SIGKILLs itself
    "before the store": "evomerge.runtime.store.RunStore.create",
    "before the run's description": "optuna.study.Study.set_user_attr",
}


def _killed_run(tmp: Path, exp_path: Path, where: str) -> subprocess.CompletedProcess:
    module, _, attr = KILL_AT[where].rpartition(".")
    script = (
        "import importlib, os, signal, sys\n"
        f"owner = importlib.import_module({module.rsplit('.', 1)[0]!r})\n"
        f"cls = getattr(owner, {module.rsplit('.', 1)[1]!r})\n"
        f"setattr(cls, {attr!r}, lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL))\n"
        "from evomerge.cli import main\n"
        f"main(['run', {str(exp_path)!r}, '--no-progress'])\n")
    return subprocess.run([sys.executable, "-c", script], cwd=tmp, env=ENV, capture_output=True, text=True, timeout=240)


@pytest.mark.parametrize("where,then", [("before the store", "run"), ("before the run's description", "resume")])
def test_run_killed_while_being_created_restarts(tmp_path, where, then):
    exp = write(tmp_path, experiment("born", budget=5))
    killed = _killed_run(tmp_path, exp, where)
    assert killed.returncode == -9, killed.stderr
    run_dir = tmp_path / "runs" / "born"
    assert (run_dir / "run.json").is_file() and (run_dir / "experiment.yaml").is_file()
    args = ["run", exp] if then == "run" else ["run", "--resume", "runs/born"]
    res = cli(args, tmp_path)
    assert res.returncode == 0, res.stderr
    assert "born: 5/5 evaluations" in res.stdout
    if then == "resume":
        assert "cut short while being created" in res.stderr
    assert [t.state for t in RunStore.open(run_dir).trials()] == ["complete"] * 5


def test_ctrl_c_while_being_created_says_so_and_leaves_nothing(tmp_path, monkeypatch):
    import optuna

    sys.path.insert(0, str(TESTS))

    def interrupt(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr(optuna.study.Study, "set_user_attr", interrupt)
    res = cli_inprocess(["run", write(tmp_path, experiment("cc", budget=3)), "--runs-dir", tmp_path / "runs"])
    assert res.returncode == 130 and "interrupted while starting" in res.stderr
    assert not (tmp_path / "runs" / "cc").exists()
    monkeypatch.undo()
    again = cli_inprocess(["run", tmp_path / "exp.yaml", "--runs-dir", tmp_path / "runs"])
    assert again.returncode == 0, again.stderr


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.mark.parametrize("target", ["foreign", "empty", "missing", "typo_url"])
@pytest.mark.parametrize("command", ["status", "pareto", "export", "dashboard"])
def test_reading_commands_never_create_or_change_a_file(tmp_path, target, command):
    folder = tmp_path / "data"
    folder.mkdir()
    foreign = folder / "other.db"
    with sqlite3.connect(foreign) as con:
        con.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
        con.execute("INSERT INTO notes (text) VALUES ('keep me')")
    con.close()
    (folder / "empty.db").write_bytes(b"")
    run = {"foreign": foreign, "empty": folder / "empty.db", "missing": folder / "nope.db",
           "typo_url": f"sqlite:///{folder / 'typo.db'}"}[target]
    before = _digest(folder)
    args = [command, run] + (["--out", tmp_path / "out", "--no-eval"] if command == "export" else [])
    res = _inproc(args)
    assert res.returncode == 2, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert _digest(folder) == before
    assert not (tmp_path / "out").exists()


def _inproc(args: list) -> subprocess.CompletedProcess:
    from typer.testing import CliRunner

    from evomerge.cli import app

    res = CliRunner().invoke(app, [str(a) for a in args])
    return subprocess.CompletedProcess(args, res.exit_code, res.stdout, res.stderr)


def test_status_and_export_leave_a_run_store_unchanged(tmp_path):
    from helpers_runs import write_run

    recipe = {"kind": "parameter", "method": "linear", "sources": [{"model": "m", "parameters": {"weight": 0.5}}]}
    run_dir = write_run(tmp_path, "ro", {"score": "maximize"}, [{"recipe": recipe, "values": [0.5]}])
    with sqlite3.connect(run_dir / "store.db") as con:  # fold the write-ahead log into the file
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    before = hashlib.sha256((run_dir / "store.db").read_bytes()).hexdigest()
    assert _inproc(["status", run_dir]).returncode == 0
    assert _inproc(["pareto", run_dir]).returncode == 0
    assert hashlib.sha256((run_dir / "store.db").read_bytes()).hexdigest() == before


def test_a_corrupted_store_is_one_line(tmp_path):
    from helpers_runs import write_run

    recipe = {"kind": "parameter", "method": "linear", "sources": [{"model": "m", "parameters": {"weight": 0.5}}]}
    trials = [{"recipe": recipe, "values": [0.1], "item_scores": {"score": list(range(500))}} for _ in range(30)]
    run_dir = write_run(tmp_path, "bad", {"score": "maximize"}, trials)
    db = run_dir / "store.db"
    with sqlite3.connect(db) as con:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    data = bytearray(db.read_bytes())
    for off in range(4096, len(data), 4096):  # scribble over every page but the schema's
        data[off + 100:off + 600] = b"\xff" * 500
    db.write_bytes(bytes(data))
    res = _inproc(["status", run_dir])
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        "error: run store: database error (database disk image is malformed); the store may be damaged"]


# ---- bad inputs, before anything runs --------------------------------------------------------------

LATIN1 = "name: caf\xe9\n".encode("latin-1")


def _one_line(res, *needles: str) -> str:
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def test_non_utf8_experiment_and_space_files_are_one_line(tmp_path):
    (tmp_path / "exp.yaml").write_bytes(LATIN1)
    _one_line(cli_inprocess(["run", tmp_path / "exp.yaml", "--runs-dir", tmp_path / "runs"]),
              "exp.yaml: not UTF-8 text (byte 0xe9")
    (tmp_path / "space.yaml").write_bytes(b"kind: parameter\nmethod: ties # \xff\n")
    _one_line(cli_inprocess(["run", write(tmp_path, experiment("s", search_space="space.yaml")),
                             "--runs-dir", tmp_path / "runs"]), "space.yaml: not UTF-8 text")
    assert not (tmp_path / "runs").exists()


def test_task_files_non_utf8_malformed_or_bad_jsonl_are_one_line(tmp_path, zoo_dir):
    (tmp_path / "latin.yaml").write_bytes(b"name: t\nkind: generate\ndescription: caf\xe9\n")
    (tmp_path / "broken.yaml").write_text("name: t\nkind: [generate\ndata: d\n")
    for name, needle in (("latin.yaml", "latin.yaml: not UTF-8 text"), ("broken.yaml", "broken.yaml: malformed YAML (line")):
        _one_line(_inproc(["eval", "zoo:base", "--task", tmp_path / name]), needle)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "validation.jsonl").write_bytes(b'{"prompt": "a", "answer": "1"}\n{"prompt": "\xff"}\n')
    (tmp_path / "jl.yaml").write_text("name: jl\nkind: generate\ndata: d\n")
    exp = experiment("jl", backend="hf", models={"base": "zoo:base", "sources": ["zoo:math", "zoo:words"]},
                     fitness={"tasks": [str(tmp_path / "jl.yaml")]})
    _one_line(cli_inprocess(["run", write(tmp_path, exp), "--runs-dir", tmp_path / "runs"]),
              "validation.jsonl:2: not UTF-8 text (byte 0xff)")
    assert not (tmp_path / "runs").exists()


def _checkpoint(folder: Path, width: int) -> str:
    """A one-layer checkpoint (config + safetensors) whose MLP is ``width`` wide."""
    import torch
    from safetensors.torch import save_file

    folder.mkdir()
    save_file({"model.embed_tokens.weight": torch.zeros(8, 4), "model.layers.0.mlp.up_proj.weight": torch.zeros(width, 4),
               "model.layers.0.mlp.down_proj.weight": torch.zeros(4, width), "lm_head.weight": torch.zeros(8, 4)},
              str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "num_hidden_layers": 1, "hidden_size": 4,
                                                    "intermediate_size": width, "vocab_size": 8}))
    return str(folder)


def test_sources_of_different_shapes_fail_before_the_search(tmp_path):
    exp = experiment("shapes", backend="hf", fitness={"tasks": ["math"]},
                     models={"base": _checkpoint(tmp_path / "base", 6),
                             "sources": [_checkpoint(tmp_path / "a", 6), _checkpoint(tmp_path / "b", 10)]})
    line = _one_line(cli_inprocess(["run", write(tmp_path, exp), "--runs-dir", tmp_path / "runs"]), "mlp.")
    assert re.search(r"/b\b.*has shape \((4, 10|10, 4)\).*/base\b.* \((4, 6|6, 4)\)$", line), line
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("options,needle", [({"limit": "three"}, "fitness.options: limit: 'three' is not a positive integer"),
                                            ({"batch_size": 0}, "batch_size: 0 is not a positive integer"),
                                            ({"device": 3}, "device: 3 is not a str")])
def test_evaluator_options_of_the_wrong_type_fail_before_the_search(tmp_path, options, needle):
    exp = experiment("opts", fitness={"tasks": ["sphere"], "options": options})
    _one_line(cli_inprocess(["run", write(tmp_path, exp), "--runs-dir", tmp_path / "runs"]), needle)
    assert not (tmp_path / "runs").exists()


def test_eval_json_into_a_missing_folder_fails_before_evaluating(tmp_path):
    _one_line(_inproc(["eval", "zoo:base", "--task", "math", "--json", tmp_path / "results" / "s.json"]),
              f"--json: folder {tmp_path / 'results'} does not exist")


def test_resume_says_when_the_experiment_file_was_edited(tmp_path):
    sys.path.insert(0, str(TESTS))
    path = write(tmp_path, experiment("ed", budget=3))
    assert cli_inprocess(["run", path, "--runs-dir", tmp_path / "runs"]).returncode == 0
    again = cli_inprocess(["run", "--resume", tmp_path / "runs" / "ed"])
    assert again.returncode == 0 and "note:" not in again.stderr
    path.write_text(yaml.safe_dump(experiment("ed", budget=3, seed=9)))
    res = cli_inprocess(["run", "--resume", tmp_path / "runs" / "ed"])
    assert res.returncode == 0, res.stderr
    notes = [ln for ln in res.stderr.splitlines() if ln.startswith("note:")]
    assert len(notes) == 1 and "exp.yaml differs from the experiment stored in run ed (seed)" in notes[0]


@pytest.mark.parametrize("args,needle", [(["run", "--bugdet", "3"], "No such option: --bugdet"),
                                         (["export"], "Missing argument 'run'"),
                                         (["run", "x.yaml", "--workers", "zero"], "Invalid value for '--workers'"),
                                         (["frobnicate"], "No such command 'frobnicate'")])
def test_cli_usage_errors_are_one_line(args, needle):
    res = subprocess.run(EVOMERGE + args, capture_output=True, text=True, timeout=60, env=ENV)
    _one_line(res, needle)


def test_export_removes_temporaries_left_by_a_killed_export(tmp_path):
    from evomerge.engine.writer import atomic_output_dir

    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / f".model.tmp-{dead.pid}-0123abcd"
    other = tmp_path / f".earlier.tmp-{dead.pid}-89abcdef"        # an export elsewhere in the folder
    live = tmp_path / f".model.tmp-{os.getpid()}-4567cdef"      # a write in progress
    mine = tmp_path / f".notes.tmp-{dead.pid}-draft"              # not ours
    for d in (stale, live, other, mine):
        (d / "sub").mkdir(parents=True)
    with atomic_output_dir(tmp_path / "model") as tmp:
        (tmp / "x").write_text("x")
    assert not stale.exists() and not other.exists() and live.exists() and mine.exists()
    assert (tmp_path / "model" / "x").read_text() == "x"

"""`evomerge run --workers N` on a local Ray instance: every candidate stored with the actor
that scored it; Ctrl-C (SIGINT to the whole process group, as a terminal sends it) stops the
run cleanly, leaves no Ray process behind, and the run resumes to its budget."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import yaml
from helpers_runtime import clean_env, finished, wait_for

from evomerge.runtime.store import RunStore

SIM = "evomerge.runtime.simulated:SimulatedEvaluator"


def experiment(name: str, budget: int, sleep: float, **extra) -> dict:
    exp = {
        "name": name, "models": {"base": "zoo:base", "sources": ["zoo:a", "zoo:b"]},
        "search_space": {"kind": "parameter", "method": "dare_ties", "weight": {"low": 0.0, "high": 2.0}},
        "fitness": {"tasks": ["sphere"], "options": {"sleep": sleep}},
        "searcher": {"name": "cmaes", "options": {"population_size": 4}}, "budget": budget, "seed": 2,
        "backend": SIM, "workers": 2, "resources": {"cpus_per_worker": 0.5, "local_cpus": 2},
    }
    return {**exp, **extra}


def cli(args: list, cwd: Path, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "evomerge.cli", *map(str, args), "--no-progress"], cwd=cwd,
                            env=clean_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kw)


def test_two_workers_store_every_candidate_then_ctrl_c_and_resume(tmp_path):
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(experiment("r", budget=16, sleep=0.3)))
    db = tmp_path / "runs" / "r" / "store.db"
    run = cli(["run", "exp.yaml"], tmp_path, start_new_session=True)

    def six_done() -> bool:
        assert run.poll() is None, run.communicate()[0][-3000:]
        return finished(db) >= 6

    wait_for(six_done, 180, "6 evaluations stored")
    family = psutil.Process(run.pid).children(recursive=True)     # raylet, gcs, actors, ...
    assert any("EvalWorker" in " ".join(p.cmdline()) or p.name().startswith("ray::") for p in family)
    os.killpg(run.pid, signal.SIGINT)
    out, _ = run.communicate(timeout=60)
    assert run.returncode == 130, out[-3000:]
    assert "interrupted" in out and "--resume" in out
    gone, alive = psutil.wait_procs(family, timeout=30)
    assert not alive, [p.cmdline()[:2] for p in alive]
    stopped_at = finished(db)
    assert 6 <= stopped_at < 16

    resumed = cli(["run", "--resume", tmp_path / "runs" / "r"], tmp_path)
    out, _ = resumed.communicate(timeout=240)
    assert resumed.returncode == 0, out[-3000:]
    trials = RunStore.open(tmp_path / "runs" / "r").trials()
    assert len(trials) == 16 and all(t.state == "complete" for t in trials)
    workers = {t.worker for t in trials}
    assert all(w.startswith("ray") and "@127.0.0.1:" in w for w in workers) and len(workers) >= 4

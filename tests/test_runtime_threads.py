"""Threads per evaluation: its share of the machine (cores in process, cores / k for k local
Ray workers, the reserved CPUs on a cluster), settable per experiment, recorded in the run."""

from __future__ import annotations

import pytest
import torch

from evomerge.experiment import Resources
from evomerge.runtime.threads import evaluation_threads, machine_cores

THREADS = "helpers_runtime:ThreadsEvaluator"      # tests/ is on the path


def test_the_share_of_the_machine_and_the_explicit_setting():
    assert evaluation_threads(Resources(), 1, cores=8) == 8
    assert evaluation_threads(Resources(), 3, cores=8) == 2
    assert evaluation_threads(Resources(), 16, cores=8) == 1
    assert evaluation_threads(Resources(local_cpus=4), 2, cores=8) == 2
    assert evaluation_threads(Resources(cpus_per_worker=4), 8, address="head:6379", cores=2) == 4
    assert evaluation_threads(Resources(cpus_per_worker=0.5), 2, address="head:6379") == 1
    assert evaluation_threads(Resources(threads=3), 2, cores=8) == 3
    assert evaluation_threads(Resources(), 1) == machine_cores()
    with pytest.raises(ValueError):
        Resources(threads=0)


def test_in_process_pool_runs_under_its_threads_and_restores_them():
    from evomerge.runtime.inprocess import InProcessPool
    from evomerge.runtime.pool import EvalJob, EvaluatorSpec

    before = torch.get_num_threads()
    want = 1 if before != 1 else 2
    pool = InProcessPool(EvaluatorSpec(sources=(), tasks=("t",), backend=THREADS, threads=want))
    pool.submit(EvalJob(0, {}))
    (res,) = pool.wait()
    pool.close()
    assert res.scores == {"t": float(want)} and torch.get_num_threads() == before


def test_run_records_its_threads_and_a_resume_with_other_workers_updates_them(tmp_path):
    from test_runtime_run import cli_inprocess, experiment, write

    from evomerge.runtime.store import RunStore

    exp = experiment("threads", budget=2, searcher="random", resources={"threads": 1})
    exp["backend"] = THREADS
    path = write(tmp_path, exp)
    assert cli_inprocess(["run", path, "--runs-dir", tmp_path / "runs"]).returncode == 0
    store = RunStore.open(tmp_path / "runs" / "threads")
    assert (store.meta["threads"], store.meta["workers"]) == (1, 1)
    assert all(t.scores == {"sphere": 1.0} for t in store.trials())
    exp["budget"], exp["resources"] = 3, {}
    res = cli_inprocess(["run", "--resume", tmp_path / "runs" / "threads", write(tmp_path, exp, "more.yaml")])
    assert res.returncode == 0, res.stderr
    store = RunStore.open(tmp_path / "runs" / "threads")
    assert store.meta["threads"] == machine_cores()
    assert store.trials()[-1].scores == {"sphere": float(machine_cores())}

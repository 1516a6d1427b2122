"""The Ray pool on a real local Ray instance: results equal the in-process evaluator's, come
back as they finish, and survive killed workers, failing evaluations and timeouts.

Workers are staged through the simulated evaluator's hooks instead of the clock: a job marked
``started`` creates a file when it runs (the test waits for it), one marked ``until`` runs until
the test creates that file (or its ``sleep`` ends)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers_runtime import wait_for

from evomerge.errors import ConfigError
from evomerge.runtime.inprocess import InProcessPool
from evomerge.runtime.pool import EvalJob, EvaluatorSpec

SIM = "evomerge.runtime.simulated:SimulatedEvaluator"


@pytest.fixture(scope="module")
def ray_local():
    from evomerge.runtime.ray_support import connect

    ray, started = connect(None, num_cpus=2)
    yield ray
    if started:
        ray.shutdown()


def spec(**options) -> EvaluatorSpec:
    return EvaluatorSpec(sources=(), tasks=("t1", "t2"), backend=SIM, options=options)


def recipe(w: float, **simulate) -> dict:
    r = {"kind": "parameter", "method": "linear", "sources": [{"model": "a", "parameters": {"weight": w}}]}
    return {**r, "simulate": simulate} if simulate else r


def pool(ray_local, n: int = 2, sp: EvaluatorSpec | None = None, **kw):
    from evomerge.runtime.ray_pool import RayPool
    from evomerge.runtime.ray_support import WorkerResources

    return RayPool(sp or spec(), n, WorkerResources(num_cpus=0.25), **kw)


def drain(p, n: int, limit: float = 60.0) -> list:
    got = []

    def all_in() -> bool:
        got.extend(p.wait(timeout=1.0))
        return len(got) >= n

    wait_for(all_in, limit, lambda: f"only {len(got)} of {n} results", every=0)
    assert len(got) == n
    return got


def held(tmp_path: Path, name: str) -> tuple[dict, Path, Path]:
    """simulate settings for a job that announces it started and runs until released (at most
    60 s), with the two paths: (settings, started, release)."""
    started, release = tmp_path / f"{name}.started", tmp_path / f"{name}.release"
    return {"sleep": 60, "until": str(release), "started": str(started)}, started, release


def pid_of(name: str) -> int:
    return int(name.rsplit(":", 1)[1])


def test_results_match_the_in_process_evaluator_and_arrive_as_they_finish(ray_local, tmp_path):
    hold, _, release = held(tmp_path, "job0")
    closed = tmp_path / "closed"                              # each evaluator's pid, when closed
    jobs = [EvalJob(i, recipe(0.1 * i, **(hold if i == 0 else {}))) for i in range(6)]
    local, ref = {}, InProcessPool(spec(closed=str(closed)))
    release.touch()                                           # the in-process reference runs at once
    for job in jobs:
        ref.submit(job)
        local.update({r.candidate_id: r for r in ref.wait()})
    ref.close()
    assert closed.read_text().split() == [str(os.getpid())]
    release.unlink()
    with pool(ray_local, sp=spec(closed=str(closed))) as p:
        assert p.capacity == 4 and len(p.workers()) == 2      # 2 workers, 2 jobs each
        for job in jobs:
            p.submit(job)
        got = []                                              # job 0 cannot finish before release
        wait_for(lambda: got.extend(p.wait(timeout=1.0)) or got, 60, "a first result", every=0)
        release.touch()
        got += drain(p, len(jobs) - len(got))
        stats = p.stats()
        pids = sorted(str(pid_of(name)) for name in p.workers())
    assert sorted(closed.read_text().split()[1:]) == pids          # closing the pool closed both
    order = [r.candidate_id for r in got]
    assert order[0] != 0 and sorted(order) == list(range(6)), "the held job must not hold back the others"
    for r in got:
        assert r.error is None and r.worker.startswith("ray")
        assert r.scores == local[r.candidate_id].scores
        assert r.item_scores == local[r.candidate_id].item_scores
    assert {r.worker for r in got} == set(stats.per_worker) and len(stats.per_worker) == 2
    assert stats.completed == 6 and stats.failed == 0 and stats.restarts == 0
    assert stats.busy_s >= sum(r.timings["total"] for r in got) and 0.0 < stats.utilization <= 1.0


def killed(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not _alive(pid), 30, f"process {pid} to die")


def replacements_joined(p, n: int) -> None:
    def joined() -> bool:
        assert p.wait(timeout=0.5) == []
        return len(p.workers()) == n

    wait_for(joined, 60, "the replacement worker to start", every=0)


def test_a_killed_worker_is_replaced_and_its_job_rerun(ray_local, tmp_path):
    hold, started, release = held(tmp_path, "job0")
    with pool(ray_local) as p:
        for i in range(4):                    # 0 and 2 on one actor, 2 queued behind 0
            p.submit(EvalJob(i, recipe(0.1 * i, **(hold if i == 0 else {}))))
        wait_for(started.exists, 60, "job 0 to start on its actor")
        victim = p._slots[0]
        assert [job.candidate_id for job, _ in victim.jobs] == [0, 2]
        victim_name = victim.name
        killed(pid_of(victim_name))
        release.touch()                       # job 0 runs to its end on the replacement
        got = {r.candidate_id: r for r in drain(p, 4)}
        stats = p.stats()
        assert all(r.error is None for r in got.values())
        assert got[0].worker != victim_name and got[2].worker != victim_name
        assert stats.requeued == 1 and stats.restarts == 1
        replacements_joined(p, 2)
        assert victim_name not in p.workers()
        # a ray.kill() from outside is just another death
        hold, started, release = held(tmp_path, "job2")
        p.submit(EvalJob(2, recipe(0.5, **hold)))
        wait_for(started.exists, 60, "job 2 to start")
        busy = next(s for s in p._slots if s.jobs)
        ray_local.kill(busy.actor)
        release.touch()
        assert drain(p, 1)[0].error is None and p.stats().requeued == 2


def test_failing_evaluations_are_results_and_the_pool_goes_on(ray_local):
    with pool(ray_local, max_retries=1) as p:
        p.submit(EvalJob(0, recipe(0.3, **{"raise": "merge exploded"})))
        p.submit(EvalJob(1, recipe(0.3, exit=True)))         # kills every worker that runs it
        p.submit(EvalJob(2, recipe(0.3)))
        got = {r.candidate_id: r for r in drain(p, 3)}
        assert "RuntimeError: merge exploded" in got[0].error
        assert "died" in got[1].error and "2 workers died" in got[1].error
        assert got[2].error is None
        p.submit(EvalJob(3, recipe(0.2)))
        assert drain(p, 1)[0].error is None
        assert p.stats().failed == 2 and p.stats().restarts == 2


def test_a_replacement_that_cannot_start_is_given_up_and_the_run_goes_on(ray_local, tmp_path):
    flag = tmp_path / "refuse"
    hold, started, release = held(tmp_path, "job0")
    with pool(ray_local, sp=spec(refuse_start_if=str(flag)), max_retries=1) as p:
        p.submit(EvalJob(0, recipe(0.3, **hold)))
        p.submit(EvalJob(1, recipe(0.3)))
        wait_for(started.exists, 60, "job 0 to start")
        flag.touch()                                          # from now on no worker can start
        killed(pid_of(p._slots[0].name))
        release.touch()
        got = {r.candidate_id: r for r in drain(p, 2)}
        assert got[0].error is None and got[1].error is None  # job 0 re-ran on the other worker

        def given_up() -> bool:
            assert p.wait(timeout=0.5) == []
            return p._slots[0].actor is None

        wait_for(given_up, 60, "slot 0 to be given up", every=0)
        assert p.stats().restarts == 2 and len(p.workers()) == 1    # a replacement and one retry
        p.submit(EvalJob(2, recipe(0.1)))
        assert drain(p, 1)[0].error is None


def test_a_stuck_evaluation_times_out_and_its_worker_is_replaced(ray_local):
    with pool(ray_local, n=1) as p:
        first = p.workers()[0]
        p.submit(EvalJob(0, recipe(0.3, sleep=600), timeout_s=1.0))
        p.submit(EvalJob(1, recipe(0.3)))
        got = {r.candidate_id: r for r in drain(p, 2)}         # within drain's 60 s: not the 600 s job
        assert got[0].error == "timeout after 1s" and got[1].error is None
        assert got[1].worker != first and p.stats().timeouts == 1
        assert not _alive(pid_of(first))


def test_bad_backend_and_impossible_resources_are_one_line_errors(ray_local):
    bad = EvaluatorSpec(sources=(), tasks=("t",), backend="no_such_module:Evaluator")
    with pytest.raises(ConfigError, match=r"^backend: cannot load no_such_module:Evaluator"):
        pool(ray_local, sp=bad)
    from evomerge.runtime.ray_pool import RayPool
    from evomerge.runtime.ray_support import WorkerResources

    with pytest.raises(ConfigError, match=r"^resources.custom.node9: 1 workers ask for 1 node9 in all, the Ray cluster has 0"):
        RayPool(spec(), 1, WorkerResources(0.25, 0.0, {"node9": 1.0}))
    with pytest.raises(ConfigError, match=r"^resources.cpus_per_worker: 3 workers ask for 3 CPU in all, the Ray cluster has 2"):
        RayPool(spec(), 3, WorkerResources(1.0))
    assert ray_local.is_initialized()     # a pool that did not start Ray leaves it running


def test_each_worker_runs_under_the_threads_of_the_spec(ray_local):
    sys.path.insert(0, os.path.dirname(__file__))      # helpers_runtime, for the actors too
    threaded = EvaluatorSpec(sources=(), tasks=("t",), backend="helpers_runtime:ThreadsEvaluator", threads=3)
    with pool(ray_local, sp=threaded) as p:
        assert sorted(p.worker_threads.values()) == [3, 3]
        p.submit(EvalJob(0, {}))
        (res,) = drain(p, 1)
    assert res.scores == {"t": 3.0}


def test_import_evomerge_does_not_import_ray():
    code = "import sys, evomerge, evomerge.cli, evomerge.runtime.driver; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_zoo_recipes_score_the_same_on_ray_workers_and_nan_weights_fail(ray_local, zoo_dir):
    from evomerge.evaluate.evaluator import Evaluator

    zoo = EvaluatorSpec(sources=("zoo:base", "zoo:math", "zoo:words"), tasks=("math_words",),
                        options={"limit": 10})
    ties = {"kind": "parameter", "method": "dare_ties", "base": "zoo:base", "seed": 3,
            "sources": [{"model": "zoo:math", "parameters": {"weight": 1.0, "density": 0.6}},
                        {"model": "zoo:words", "parameters": {"weight": {"default": 0.8, "mlp": 0.4}, "density": 0.5}}]}
    recipes = [{"kind": "parameter", "method": "linear", "sources": [{"model": "zoo:math", "parameters": {"weight": 1.0}}]},
               ties,
               {"kind": "parameter", "method": "task_arithmetic", "base": "zoo:base",
                "sources": [{"model": "zoo:math", "parameters": {"weight": 1e38}}], "parameters": {"lambda": 1e38}}]
    jobs = [EvalJob(i, r) for i, r in enumerate(recipes)]
    local = Evaluator(zoo)
    expected = [local.evaluate(job) for job in jobs]
    with pool(ray_local, n=1, sp=zoo) as p:
        for job in jobs:
            p.submit(job)
        got = {r.candidate_id: r for r in drain(p, len(jobs), limit=180)}
    for want in expected[:2]:
        have = got[want.candidate_id]
        assert want.error is None and have.error is None, (want.error, have.error)
        assert have.scores == want.scores and have.item_scores == want.item_scores
        assert len(have.item_scores["math_words"]) == 10 and have.worker.startswith("ray")
    assert "non-finite" in got[2].error and expected[2].error == got[2].error

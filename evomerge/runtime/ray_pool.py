"""The Ray evaluation pool: long-lived actors with resident sources, fed asynchronously.

Each actor builds its evaluator once (sources loaded once, on its GPU if Ray gave it one) and
then scores one job at a time. ``submit`` hands a job to the least loaded actor at once (or
queues it); ``wait`` returns results in the order they finish (``ray.wait``). Each actor holds
up to ``depth`` jobs (one running, the rest queued inside the actor), so it starts its next job
the moment it finishes one, without waiting for the driver: ``capacity`` is workers × depth.
Faults are handled here, invisibly to the loop:

- an actor that dies mid-job (killed, crashed, its node lost) is replaced and its jobs re-queued;
  a job that has killed ``max_retries + 1`` workers is failed instead of retried forever;
- a job running past its ``timeout_s`` is failed ("timeout after Ns") and its actor, which
  cannot be interrupted, is killed and replaced (the jobs queued behind it are re-queued);
- exceptions and NaN weights inside an evaluation come back as failed results (the evaluator's
  and ``safe_evaluate``'s job), so they never reach this layer as errors.

``stats()`` reports how busy the workers were (their own measured evaluation time over their
lifetime) and the driver's own time per evaluation; ``utilization()`` feeds the progress bar.
"""

from __future__ import annotations

import os
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from evomerge.errors import ConfigError, EvomergeError
from evomerge.evaluate.result import EvalResult
from evomerge.runtime.pool import EvalJob, EvaluatorSpec
from evomerge.runtime.ray_support import WorkerResources, check_feasible, connect, per_worker
from evomerge.runtime.ray_worker import EvalWorker

CLOSE_TIMEOUT_S = 30.0               # for the idle actors' evaluators to close at pool close


@dataclass
class _Slot:
    """One worker position: its current actor, and the job that actor is running."""

    index: int
    request: WorkerResources
    actor: Any = None
    ready_ref: Any = None            # set while the actor is still building its evaluator
    name: str = ""
    jobs: deque = field(default_factory=deque)   # (EvalJob, ObjectRef), the first one running
    started: float = 0.0             # when the first job started (as far as the driver knows)
    alive_since: float | None = None
    start_failures: int = 0          # consecutive actors of this slot that died while starting


@dataclass
class PoolStats:
    workers: int
    busy_s: float                    # summed evaluation time measured inside the actors
    alive_s: float                   # summed time actors were ready to work
    completed: int = 0
    failed: int = 0
    requeued: int = 0                # jobs re-run after their worker died
    timeouts: int = 0
    restarts: int = 0                # actors replaced
    driver_s: float = 0.0            # driver time in submit/wait, not counting blocking in ray.wait
    roundtrip_s: float = 0.0         # summed (result seen by the driver - job start - actor busy time)
    waited_s: float = 0.0            # driver time blocked in ray.wait (idle driver: it keeps up)
    per_worker: dict[str, float] = field(default_factory=dict)   # actor name -> busy seconds

    @property
    def utilization(self) -> float | None:
        return self.busy_s / self.alive_s if self.alive_s > 0 else None


class RayPool:
    """``EvaluationPool`` over ``workers`` Ray actors (see the module docstring)."""

    def __init__(self, spec: EvaluatorSpec, workers: int, resources: Any = None, *,
                 address: str | None = None, local_cpus: int | None = None, depth: int = 2,
                 start_timeout_s: float = 300.0, max_retries: int = 2) -> None:
        if workers < 1:
            raise ConfigError(f"workers: {workers}: the Ray pool needs at least 1")
        address = address or getattr(resources, "address", None)
        self.spec, self.max_retries, self.depth = spec, max_retries, max(1, depth)
        self._ray, self._owns_ray = connect(address, local_cpus or getattr(resources, "local_cpus", None))
        self._queue: deque[EvalJob] = deque()
        self._done: list[EvalResult] = []
        self._deaths: dict[int, int] = {}
        self._stats = PoolStats(workers=workers, busy_s=0.0, alive_s=0.0)
        self._retired_alive = 0.0
        self.worker_threads: dict[str, int | None] = {}   # actor name -> its torch threads
        self._closed = False
        self._paths = [p for p in sys.path if p]
        self._env = {k: v for k, v in os.environ.items() if k.startswith("EVOMERGE_")}
        self._slots: list[_Slot] = []
        try:
            requests = per_worker(resources, workers)
            check_feasible(self._ray, requests)
            self._actor_cls = self._ray.remote(EvalWorker)
            self._slots = [_Slot(i, req) for i, req in enumerate(requests)]
            for slot in self._slots:
                self._start(slot)
            self._await_start(start_timeout_s)
        except BaseException:
            self.close()
            raise

    # --- the EvaluationPool protocol ------------------------------------------------------
    @property
    def capacity(self) -> int:
        return len(self._slots) * self.depth

    def submit(self, job: EvalJob) -> None:
        t0 = time.perf_counter()
        self._queue.append(job)
        self._dispatch()
        self._stats.driver_s += time.perf_counter() - t0

    def wait(self, timeout: float | None = None) -> list[EvalResult]:
        t0 = time.perf_counter()
        end = None if timeout is None else t0 + timeout
        blocked = 0.0
        while True:
            self._dispatch()
            if self._done:
                break
            refs = {s.jobs[0][1]: s for s in self._slots if s.jobs}
            refs.update({s.ready_ref: s for s in self._slots if s.ready_ref is not None})
            if not refs:
                break                   # nothing running or starting: nothing can finish
            left = None if end is None else max(0.0, end - time.perf_counter())
            block = _min(left, self._next_deadline())
            b0 = time.perf_counter()
            ready, _ = self._ray.wait(list(refs), num_returns=1, timeout=block)
            if ready:
                ready, _ = self._ray.wait(list(refs), num_returns=len(refs), timeout=0)
            blocked += time.perf_counter() - b0
            for ref in ready:
                self._finished(refs[ref], ref)
            self._expire()
            if self._done or (end is not None and time.perf_counter() >= end):
                break
        out, self._done = self._done, []
        self._stats.driver_s += time.perf_counter() - t0 - blocked
        self._stats.waited_s += blocked
        return out

    def close(self) -> None:
        """Close the idle actors' evaluators (bounded wait), kill every actor (in-flight jobs are
        dropped: a busy actor cannot be interrupted) and stop Ray if this pool started it."""
        if self._closed:
            return
        self._closed = True
        try:
            idle = [s.actor.close.remote() for s in self._slots if s.alive_since is not None and not s.jobs]
            if idle:
                self._ray.wait(idle, num_returns=len(idle), timeout=CLOSE_TIMEOUT_S)
        except Exception:  # noqa: BLE001 - Ray going down (Ctrl-C reached it too): kill below
            pass
        for slot in self._slots:
            self._kill(slot)
        if self._owns_ray and self._ray.is_initialized():
            self._ray.shutdown()

    def __enter__(self) -> "RayPool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- progress and benchmarks ----------------------------------------------------------
    def utilization(self) -> float | None:
        """Fraction of the workers' ready time spent evaluating, so far."""
        return self.stats().utilization

    def stats(self) -> PoolStats:
        now = time.perf_counter()
        alive = self._retired_alive + sum(now - s.alive_since for s in self._slots if s.alive_since is not None)
        running = sum(now - s.started for s in self._slots if s.jobs)
        st = self._stats
        return PoolStats(st.workers, st.busy_s + running, alive, st.completed, st.failed, st.requeued,
                         st.timeouts, st.restarts, st.driver_s, st.roundtrip_s, st.waited_s,
                         dict(st.per_worker))

    def summary(self) -> str | None:
        """One line for the end of a run: how busy the workers were and what went wrong."""
        st = self.stats()
        busy = "-" if st.utilization is None else f"{st.utilization:.0%}"
        return (f"ray: {st.workers} workers, {st.completed + st.failed} evaluations, {busy} busy; "
                f"{st.restarts} workers replaced, {st.requeued} jobs re-run, {st.timeouts} timed out")

    def workers(self) -> list[str]:
        """Names (ray<i>@<node ip>:<pid>) of the actors that are ready now."""
        return [s.name for s in self._slots if s.alive_since is not None]

    # --- internals ------------------------------------------------------------------------
    def _start(self, slot: _Slot) -> None:
        opts = {**slot.request.options(), "max_restarts": 0, "max_concurrency": 1}
        if not slot.request.custom:
            opts["scheduling_strategy"] = "SPREAD"
        slot.actor = self._actor_cls.options(**opts).remote(self.spec, self._paths, self._env, slot.index)
        slot.ready_ref, slot.alive_since, slot.name = slot.actor.info.remote(), None, ""

    def _await_start(self, timeout_s: float) -> None:
        """Block until every actor built its evaluator; a construction error is a ConfigError."""
        end = time.perf_counter() + timeout_s
        while any(s.ready_ref is not None for s in self._slots):
            refs = {s.ready_ref: s for s in self._slots if s.ready_ref is not None}
            left = end - time.perf_counter()
            if left <= 0:
                if any(s.alive_since is not None for s in self._slots):
                    return      # the rest join when Ray can place them
                raise ConfigError(f"workers: no Ray worker started within {timeout_s:g}s "
                                  f"(resources per worker: {self._slots[0].request.options()})")
            ready, _ = self._ray.wait(list(refs), num_returns=len(refs), timeout=min(left, 1.0))
            for ref in ready:
                self._ready(refs[ref], ref, initial=True)

    def _ready(self, slot: _Slot, ref: Any, initial: bool = False) -> None:
        """An actor finished starting. At pool start any failure is a ConfigError; later, a
        replacement that keeps failing is given up (the run goes on with the other workers)."""
        slot.ready_ref = None
        try:
            info = self._ray.get(ref)
        except self._ray.exceptions.RayActorError as err:
            info = {"error": f"workers: Ray worker {slot.index} died while starting ({_first_line(err)})"}
        error = info["error"]
        if error is None:
            slot.name, slot.alive_since, slot.start_failures = info["name"], time.perf_counter(), 0
            self.worker_threads[slot.name] = info.get("torch_threads")
            return
        if initial:
            raise ConfigError(error)
        slot.start_failures += 1
        if slot.start_failures <= self.max_retries:
            self._replace(slot)
            return
        self._kill(slot)                               # this position stays empty
        if not any(s.actor is not None for s in self._slots):
            raise EvomergeError(f"every Ray worker failed to start again; last: {error}")

    def _dispatch(self) -> None:
        """Queued jobs to the least loaded ready actors, up to ``depth`` each."""
        while self._queue:
            open_slots = [s for s in self._slots if s.alive_since is not None and len(s.jobs) < self.depth]
            if not open_slots:
                return
            slot = min(open_slots, key=lambda s: len(s.jobs))
            job = self._queue.popleft()
            if not slot.jobs:
                slot.started = time.perf_counter()
            slot.jobs.append((job, slot.actor.evaluate.remote(job)))

    def _finished(self, slot: _Slot, ref: Any) -> None:
        if slot.ready_ref is not None and ref == slot.ready_ref:
            self._ready(slot, ref)
            return
        job, started = slot.jobs[0][0], slot.started
        exc = self._ray.exceptions
        try:
            result, busy = self._ray.get(ref)
        except exc.RayActorError as err:
            self._stats.busy_s += time.perf_counter() - started
            self._lost(job, slot, f"worker {slot.name or slot.index} died ({_first_line(err)})")
            return
        except exc.RayError as err:            # e.g. a result that cannot be deserialized
            result, busy = EvalResult(job.candidate_id, worker=slot.name, error=_first_line(err)), 0.0
        slot.jobs.popleft()
        slot.started = time.perf_counter()             # the next job starts now, inside the actor
        self._stats.busy_s += busy
        self._stats.roundtrip_s += max(0.0, time.perf_counter() - started - busy)
        self._stats.per_worker[slot.name] = self._stats.per_worker.get(slot.name, 0.0) + busy
        self._deliver(result)

    def _lost(self, job: EvalJob, slot: _Slot, reason: str) -> None:
        """The actor under ``job`` is gone: replace it and run the job again (within limits)."""
        name = slot.name
        self._replace(slot)
        deaths = self._deaths.get(job.candidate_id, 0) + 1
        self._deaths[job.candidate_id] = deaths
        if deaths > self.max_retries:
            self._deliver(EvalResult(job.candidate_id, worker=name, error=f"{reason}; "
                                     f"{deaths} workers died running this candidate, not retried"))
        else:
            self._stats.requeued += 1
            self._queue.appendleft(job)

    def _expire(self) -> None:
        now = time.perf_counter()
        for slot in self._slots:
            job = slot.jobs[0][0] if slot.jobs else None
            if job is None or job.timeout_s is None or now - slot.started < job.timeout_s:
                continue
            self._stats.busy_s += now - slot.started
            self._stats.timeouts += 1
            name = slot.name
            self._replace(slot)
            self._deliver(EvalResult(job.candidate_id, worker=name, error=f"timeout after {job.timeout_s:g}s"))

    def _next_deadline(self) -> float | None:
        now = time.perf_counter()
        left = [s.started + s.jobs[0][0].timeout_s - now for s in self._slots
                if s.jobs and s.jobs[0][0].timeout_s is not None]
        return max(0.0, min(left)) if left else None

    def _replace(self, slot: _Slot) -> None:
        self._kill(slot)
        self._stats.restarts += 1
        self._start(slot)

    def _kill(self, slot: _Slot) -> None:
        """Stop the slot's actor; jobs it had not started yet go back to the front of the queue."""
        if slot.alive_since is not None:
            self._retired_alive += time.perf_counter() - slot.alive_since
        waiting = [job for job, _ in list(slot.jobs)[1:]] if not self._closed else []
        self._queue.extendleft(reversed(waiting))
        slot.alive_since, slot.ready_ref = None, None
        slot.jobs.clear()
        if slot.actor is not None:
            try:
                self._ray.kill(slot.actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone (its node died, Ray shut down)
                pass
            slot.actor = None

    def _deliver(self, result: EvalResult) -> None:
        self._deaths.pop(result.candidate_id, None)
        if result.failed:
            self._stats.failed += 1
        else:
            self._stats.completed += 1
        self._done.append(result)


def _min(a: float | None, b: float | None) -> float | None:
    vals = [v for v in (a, b) if v is not None]
    return min(vals) if vals else None


def _first_line(err: BaseException) -> str:
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    return lines[0] if lines else type(err).__name__

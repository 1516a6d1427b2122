"""Open a run for `evomerge run`: validate everything first, then (and only then) write.

A new run gets runs/NAME/ with run.json (where its store is), experiment.yaml (the resolved
experiment) and, by default, store.db. Start-up (checks, Ray, engines, loading the sources) is
timed and stored with the run (``startup_s``, one entry per session), and counted in its time. ``--resume`` rebuilds the session from the experiment
stored in the run; an experiment file given beside it must match except for budget and workers.
"""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from evomerge.errors import ConfigError, EvomergeError
from evomerge.experiment import Experiment, load_experiment, resolved
from evomerge.runtime.preflight import preflight
from evomerge.runtime.session import Session, build_session
from evomerge.runtime.store import (
    DB_FILE, RUN_FILE, RunStore, StoreError, gene_meta, sqlite_url, write_run_file,
)
from evomerge.runtime.threads import evaluation_threads

MAY_CHANGE_ON_RESUME = ("budget", "workers", "resources")


def make_pool(session: Session, workers: int, address: str | None = None) -> Any:
    """In-process evaluation for one worker, the Ray actor pool for more (or to join a cluster).
    Sets ``session.spec.threads`` to each evaluation's share of the machine first."""
    address = address or session.experiment.resources.address
    threads = evaluation_threads(session.experiment.resources, workers, address)
    session.spec = replace(session.spec, threads=threads)
    if workers <= 1 and not address:
        from evomerge.runtime.inprocess import InProcessPool

        return InProcessPool(session.spec)
    try:
        from evomerge.runtime.ray_pool import RayPool
    except ImportError as err:
        raise ConfigError(f"workers: {workers} needs the Ray pool ({err})") from None
    return RayPool(session.spec, workers, session.experiment.resources, address=address)


def open_run(experiment: Path | None, resume: str | None, workers: int | None,
             runs_dir: Path, address: str | None = None) -> tuple[RunStore, Session, Any]:
    if resume is not None:
        return _resume(experiment, resume, workers, runs_dir, address)
    exp = load_experiment(experiment)
    return _create(exp, str(experiment), workers, runs_dir, address)


def _create(exp: Experiment, source: str, workers: int | None, runs_dir: Path,
            address: str | None = None) -> tuple[RunStore, Session, Any]:
    """A new run. Written in this order: experiment.yaml, run.json, the store. A run killed
    before its store is complete is found by run.json and created again (by `run` or `--resume`)."""
    began, t0 = datetime.now(), time.perf_counter()
    n_workers = workers or exp.workers
    session = build_session(exp, n_workers)
    preflight(session)
    run_dir = runs_dir / exp.name
    url = exp.store or sqlite_url(run_dir / DB_FILE)
    if (run_dir / RUN_FILE).exists() or (exp.store is None and (run_dir / DB_FILE).exists()):
        if run_is_stored(run_dir):
            raise ConfigError(f"{source}: name: run {exp.name!r} exists in {run_dir}; continue it with "
                              f"`evomerge run --resume {run_dir}` or choose another name")
    logs = _engine_logs(session, n_workers, address, None)
    try:
        pool = make_pool(session, n_workers, address)   # loads sources: may fail, nothing written yet
    except BaseException:
        if logs:
            logs.close()
        raise
    startup = round(time.perf_counter() - t0, 2)
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        text = yaml.safe_dump(resolved(exp), sort_keys=False)
        tmp = run_dir / "experiment.yaml.tmp"
        tmp.write_text(text)
        tmp.replace(run_dir / "experiment.yaml")
        write_run_file(run_dir, url, exp.name)
        store = RunStore.create(url, exp.name, resolved(exp), exp.searcher.name,
                                exp.objective_directions(), exp.limits.evaluations,
                                extra={"run_dir": str(run_dir), "space_kind": session.space.kind,
                                       "dim": session.space.dim, "experiment_file": _abs(source),
                                       "started": began.isoformat(timespec="seconds"), "startup_s": [startup],
                                       "genes": gene_meta(session.space.gene_labels(), session.space.lower,
                                                          session.space.upper),
                                       "workers": n_workers, "threads": session.spec.threads,
                                       "budget_items": exp.limits.items})
        if logs:
            logs.move_into(run_dir)
    except BaseException:  # Ctrl-C included: nothing half made stays behind
        pool.close()
        if logs:
            logs.close()
        if created:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    return store, session, pool


def _engine_logs(session: Session, workers: int, address: str | None, run_dir: Path | None) -> Any:
    """vLLM's log lines into the run folder when its engine runs in this process (Ray workers'
    output stays in Ray's own log files)."""
    if session.spec.backend != "vllm" or workers > 1 or address or session.experiment.resources.address:
        return None
    from evomerge.runtime.engine_logs import EngineLogs

    return EngineLogs.start(run_dir)


def _abs(source: str) -> str | None:
    p = Path(source)
    return str(p.resolve()) if p.is_file() else None


def run_is_stored(run_dir: Path) -> bool:
    """Whether ``run_dir`` names a complete run (False for one whose creation was cut short)."""
    try:
        RunStore.open(run_dir, read_only=True)
    except StoreError:
        return False
    return True


def _resume(experiment: Path | None, resume: str, workers: int | None,
            runs_dir: Path, address: str | None = None) -> tuple[RunStore, Session, Any]:
    try:
        store = RunStore.open(resume, runs_dir)
    except StoreError:
        restart = _unfinished_run(resume, runs_dir)
        if restart is None:
            raise
        _note(f"note: run {restart.name} was cut short while being created; creating it again")
        exp = load_experiment(restart / "experiment.yaml")
        return _create(exp, str(restart / "experiment.yaml"), workers, restart.parent, address)
    stored = Experiment.model_validate(store.info().experiment)
    stored._space_where = f"run {store.name}: search_space"
    exp = stored
    if experiment is not None:
        given = load_experiment(experiment)
        a, b = resolved(stored), resolved(given)
        for key in a:
            if key not in MAY_CHANGE_ON_RESUME and a[key] != b.get(key):
                raise ConfigError(f"{experiment}: {key}: differs from the run being resumed "
                                  f"(only {', '.join(MAY_CHANGE_ON_RESUME)} may change)")
        exp = stored.model_copy(update={k: getattr(given, k) for k in MAY_CHANGE_ON_RESUME})
        exp._space_where = stored._space_where
        if (given.limits.evaluations, given.limits.items) != (store.meta.get("budget"), store.meta.get("budget_items")):
            store.update_meta(budget=given.limits.evaluations, budget_items=given.limits.items)
    else:
        _note_edited(store, stored)
    t0 = time.perf_counter()
    n_workers = workers or exp.workers
    session = build_session(exp, n_workers)
    preflight(session)
    _engine_logs(session, n_workers, address, Path(store.meta.get("run_dir") or "."))
    pool = make_pool(session, n_workers, address)
    store.update_meta(startup_s=[*store.meta.get("startup_s", []), round(time.perf_counter() - t0, 2)])
    if (store.meta.get("workers"), store.meta.get("threads")) != (n_workers, session.spec.threads):
        store.update_meta(workers=n_workers, threads=session.spec.threads)   # this session's setting
    return store, session, pool


def _unfinished_run(resume: str, runs_dir: Path) -> Path | None:
    """The run folder named by ``resume`` when its creation was cut short (experiment.yaml and
    run.json written, the store not complete), else None."""
    for cand in (Path(resume), runs_dir / resume):
        if (cand / RUN_FILE).is_file() and (cand / "experiment.yaml").is_file():
            return None if run_is_stored(cand) else cand
    return None


def _note_edited(store: RunStore, stored: Experiment) -> None:
    """One line when the experiment file the run was started from has changed since: resume
    keeps the stored experiment."""
    source = store.meta.get("experiment_file")
    if not source or not Path(source).is_file():
        return
    try:
        now = resolved(load_experiment(source))
    except EvomergeError:
        now = None
    ours = resolved(stored)
    if now == ours:
        return
    keys = [k for k in ours if now is None or now.get(k) != ours[k]]
    _note(f"note: {source} differs from the experiment stored in run {store.name} "
               f"({', '.join(keys) if keys else 'unreadable now'}); --resume continues the stored one "
               f"(pass the file as EXPERIMENT to change {', '.join(MAY_CHANGE_ON_RESUME)})")


def _note(line: str) -> None:
    """One line for the user on stderr."""
    print(line, file=sys.stderr, flush=True)

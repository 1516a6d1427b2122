"""Open a run for `evomerge run`: validate everything first, then (and only then) write.

A new run gets runs/NAME/ with run.json (where its store is), experiment.yaml (the resolved
experiment) and, by default, store.db. ``--resume`` rebuilds the session from the experiment
stored in the run; an experiment file given beside it must match except for budget and workers.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from evomerge.errors import ConfigError
from evomerge.experiment import Experiment, load_experiment, resolved
from evomerge.runtime.session import Session, build_session
from evomerge.runtime.store import RunStore, sqlite_url, write_run_file
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
    n_workers = workers or exp.workers
    session = build_session(exp, n_workers)
    run_dir = runs_dir / exp.name
    url = exp.store or sqlite_url(run_dir / "store.db")
    if exp.store is None and (run_dir / "store.db").exists():
        raise ConfigError(f"{experiment}: name: run {exp.name!r} exists in {run_dir}; continue it with "
                          f"`evomerge run --resume {run_dir}` or choose another name")
    pool = make_pool(session, n_workers, address)   # loads sources: may fail, nothing written yet
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        store = RunStore.create(url, exp.name, resolved(exp), exp.searcher.name,
                                exp.objective_directions(), exp.budget,
                                extra={"run_dir": str(run_dir), "space_kind": session.space.kind,
                                       "dim": session.space.dim, "workers": n_workers,
                                       "threads": session.spec.threads})
    except Exception:
        pool.close()
        if created:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    write_run_file(run_dir, url, exp.name)
    (run_dir / "experiment.yaml").write_text(yaml.safe_dump(resolved(exp), sort_keys=False))
    return store, session, pool


def _resume(experiment: Path | None, resume: str, workers: int | None,
            runs_dir: Path, address: str | None = None) -> tuple[RunStore, Session, Any]:
    store = RunStore.open(resume, runs_dir)
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
        if given.budget != store.meta.get("budget"):
            store.update_meta(budget=given.budget)
    n_workers = workers or exp.workers
    session = build_session(exp, n_workers)
    pool = make_pool(session, n_workers, address)
    if (store.meta.get("workers"), store.meta.get("threads")) != (n_workers, session.spec.threads):
        store.update_meta(workers=n_workers, threads=session.spec.threads)   # this session's setting
    return store, session, pool

"""The durable run store: one Optuna study per run, one trial per candidate.

Optuna's RDB storage (SQLite by default, any SQLAlchemy URL) holds everything, so
optuna-dashboard can open a run. Our searcher drives; Optuna only stores. Writes, in order:

1. ``add_candidate``: the trial is created RUNNING with candidate id, genome, recipe, its ask
   sequence number and the genes as Optuna parameters in ONE transaction, so a trial never
   exists half described.
2. ``finish``: the result (scores, per-item scores, timings, worker, error, tell sequence
   number) as one user attribute, the flip to COMPLETE (objective values as the trial's values)
   or FAIL, in ONE transaction. The flip is what makes a result count (a RUNNING trial is
   simply evaluated again); ``finish`` returns only once it is committed.
3. ``save_searcher_state``: the searcher's versioned JSON state with the sequence number of the
   last event it has seen (one study attribute, overwritten).

The rows are written directly (evomerge/runtime/optuna_rows.py: Optuna's own write path costs
~10x more driver CPU per evaluation); reading goes through Optuna's public API. SQLite runs in
WAL mode with synchronous=NORMAL: a committed evaluation survives the process being killed at
any moment; an OS crash or power loss can lose the last commits but never corrupts the file
(WAL replays whole transactions), which leaves a consistent prefix of the run, the state a run
killed earlier would have. synchronous=FULL would add an fsync per commit (benchmarks/store_cost.py
measures it) for the power-loss case only.

A SIGKILL between any two writes leaves a consistent prefix: on resume the searcher loads the
saved state and replays, in sequence order, the asks and tells recorded after it (searchers are
deterministic, so replayed asks reproduce the stored candidates). Readers get plain
``TrialRecord`` / ``RunInfo`` objects and never see Optuna types.
"""

from __future__ import annotations

import contextlib
import json
import math
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any

from evomerge.errors import EvomergeError
from evomerge.evaluate.result import EvalResult
from evomerge.runtime.optuna_rows import OptunaRows
from evomerge.runtime.records import RunInfo, TrialRecord

SCHEMA = 1
RUN_FILE = "run.json"
DB_FILE = "store.db"
_STATES = {"COMPLETE": "complete", "FAIL": "failed", "RUNNING": "running",
           "PRUNED": "failed", "WAITING": "running"}


class StoreError(EvomergeError):
    """The run store is missing, belongs to something else, or disagrees with the run."""


def sqlite_url(path: str | Path) -> str:
    return f"sqlite:///{Path(path).resolve()}"


def locate_run(run: str | Path, runs_dir: str | Path = "runs") -> tuple[str, str | None]:
    """(storage URL, study name or None) for a run directory, run name, .db file or URL."""
    text = str(run)
    if "://" in text:
        url, _, name = text.partition("#")
        return url, name or None
    for cand in (Path(text), Path(runs_dir) / text):
        if cand.is_dir() and (cand / RUN_FILE).is_file():
            try:
                meta = json.loads((cand / RUN_FILE).read_text())
                return str(meta["store"]), str(meta["name"])
            except (OSError, ValueError, KeyError) as err:
                raise StoreError(f"{cand / RUN_FILE}: unreadable run file ({err})") from None
        if cand.is_dir() and (cand / DB_FILE).is_file():
            return sqlite_url(cand / DB_FILE), None
        if cand.is_file():
            return sqlite_url(cand), None
    raise StoreError(f"{text}: no such run (looked for a run directory, {Path(runs_dir) / text}, a .db file or a URL)")


MAX_GENE_PARAMS = 64   # larger genomes (layer paths, raw weights) stay in the genome attribute only:
                       # every reader of the run parses each parameter row


def gene_meta(names: list[str], lower: Any, upper: Any) -> dict[str, Any] | None:
    """The ``genes`` entry of a run's meta: Optuna parameter names and ranges (None when too many)."""
    if len(names) > MAX_GENE_PARAMS or len(set(names)) != len(names):
        return None
    return {"names": list(names), "low": [float(v) for v in lower], "high": [float(v) for v in upper]}


def write_run_file(run_dir: Path, url: str, name: str) -> None:
    """runs/NAME/run.json: where the run's store lives (atomic write)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = run_dir / (RUN_FILE + ".tmp")
    tmp.write_text(json.dumps({"name": name, "store": url}, indent=2) + "\n")
    tmp.replace(run_dir / RUN_FILE)


def sqlite_path(url: str) -> Path | None:
    """The file of a plain ``sqlite:///PATH`` URL, else None."""
    return Path(url[len("sqlite:///"):]) if url.startswith("sqlite:///") and "?" not in url else None


def _probe_sqlite(url: str, path: Path) -> None:
    """Refuse, without writing anything, a file that is not an Optuna store: a missing path (a
    typo must not create a database), an empty file, another program's SQLite file, a corrupted one."""
    import sqlite3

    if not path.is_file():
        raise StoreError(f"store {url}: no such file")
    if path.stat().st_size == 0:
        raise StoreError(f"store {url}: empty file, not a run store")
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as con:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.Error as err:
        raise StoreError(f"store {url}: unreadable ({err})") from None
    if not {"studies", "trials", "version_info"} <= tables:
        raise StoreError(f"store {url}: an SQLite file without Optuna's tables, not a run store")


def _storage(url: str, read_only: bool = False):
    """Optuna's RDB storage on ``url``; ``read_only`` creates and changes nothing (SQLite files are
    opened in SQLite's read-only mode)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    path = sqlite_path(url)
    open_url = f"sqlite:///file:{path.resolve()}?mode=ro&uri=true" if read_only and path is not None else url
    try:
        storage = optuna.storages.RDBStorage(open_url, skip_table_creation=read_only)
    except Exception as err:  # sqlalchemy / driver errors: one line naming the URL
        raise StoreError(f"store {url}: cannot open ({type(err).__name__}: {str(err).splitlines()[0]})") from None
    if url.startswith("sqlite") and not read_only:
        _sqlite_wal(storage.engine)
    return storage


def _sqlite_wal(engine: Any) -> None:
    """WAL journal, synchronous=NORMAL: a commit survives the process being killed (only an OS
    crash can lose the last ones), costs no fsync, and readers never block the run's writer."""
    from sqlalchemy import event

    def pragmas(conn: Any, _record: Any) -> None:
        cur = conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    event.listen(engine, "connect", pragmas)
    engine.dispose()  # connections opened while creating the tables get the pragmas too


class RunStore:
    """Read and write one run; see the module docstring for the write protocol."""

    def __init__(self, storage: Any, name: str, url: str) -> None:
        import optuna

        self.url, self.name = url, name
        self._storage = storage
        self.study = optuna.load_study(study_name=name, storage=storage)
        self._study_id = storage.get_study_id_from_name(name)
        self._meta = self.study.user_attrs.get("evomerge")
        if not isinstance(self._meta, dict) or self._meta.get("schema") != SCHEMA:
            raise StoreError(f"store {url}: study {name!r} is not an evomerge run (schema {SCHEMA})")
        self._rows_: OptunaRows | None = None
        self._gene_dists: list[str] | None = None
        self._trial_of_: dict[int, int] | None = None   # candidate id -> Optuna trial id

    @property
    def _rows(self) -> OptunaRows:
        """The row writer, made on the first write (readers never need it)."""
        if self._rows_ is None:
            try:
                self._rows_ = OptunaRows(self._storage, self._study_id, self.url)
            except EvomergeError as err:
                raise StoreError(str(err)) from None
        return self._rows_

    @property
    def _trial_of(self) -> dict[int, int]:
        if self._trial_of_ is None:
            self._trial_of_ = {int(c): tid for c, tid in self._rows.trial_ids("candidate_id").items()}
        return self._trial_of_

    # -- opening -----------------------------------------------------------------------------
    @classmethod
    def create(cls, url: str, name: str, experiment: dict[str, Any], searcher: str,
               objectives: dict[str, str], budget: int | None, extra: dict[str, Any] | None = None) -> "RunStore":
        """A new run; StoreError when the store already holds a run of that name. A study of that
        name without user attributes (the run's description is its last write) and without
        trials is what a creation killed half-way leaves: it is replaced."""
        import optuna

        storage = _storage(url)
        old = next((s for s in storage.get_all_studies() if s.study_name == name), None)
        if old is not None:
            old_id = storage.get_study_id_from_name(name)
            if old.user_attrs or storage.get_n_trials(old_id) > 0:
                raise StoreError(f"store {url}: a run named {name!r} exists already (resume it with --resume)")
            storage.delete_study(old_id)
        directions = [objectives[k] for k in objectives]
        study = optuna.create_study(storage=storage, study_name=name, directions=directions)
        with warnings.catch_warnings():  # "experimental" since Optuna 3.2, still the way to name values
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(objectives))
        meta = {"schema": SCHEMA, "experiment": experiment, "searcher": searcher, "objectives": objectives,
                "budget": budget, "started": datetime.now().isoformat(timespec="seconds"), **(extra or {})}
        study.set_user_attr("evomerge", meta)
        return cls(storage, name, url)

    @classmethod
    def open(cls, run: str | Path, runs_dir: str | Path = "runs", read_only: bool = False) -> "RunStore":
        """Open an existing run by directory, name (under ``runs_dir``), .db file or URL[#name].
        ``read_only`` (status, pareto, export): nothing is created or changed, whatever the URL."""
        url, name = locate_run(run, runs_dir)
        path = sqlite_path(url)
        if path is not None:   # an existing run is never created by opening it
            _probe_sqlite(url, path)
        storage = _storage(url, read_only)
        try:
            names = [s.study_name for s in storage.get_all_studies()]
        except Exception as err:  # e.g. a database without Optuna's tables behind a server URL
            raise StoreError(f"store {url}: cannot read ({type(err).__name__}: {str(err).splitlines()[0]})") from None
        if name is None:
            if len(names) != 1:
                raise StoreError(f"store {url}: holds {len(names)} runs; name one as URL#NAME ({', '.join(names)})")
            name = names[0]
        elif name not in names:
            raise StoreError(f"store {url}: no run named {name!r}")
        return cls(storage, name, url)

    # -- readers -----------------------------------------------------------------------------
    def info(self) -> RunInfo:
        m = self._meta
        started = datetime.fromisoformat(m["started"]) if m.get("started") else None
        return RunInfo(name=self.name, experiment=m["experiment"], searcher=m["searcher"],
                       objectives=dict(m["objectives"]), budget=m.get("budget"),
                       budget_items=m.get("budget_items"), started=started,
                       startup_s=[float(x) for x in m.get("startup_s") or []],
                       baselines=self.references())

    @property
    def storage(self) -> Any:
        """The Optuna storage (read-only when opened so), e.g. for optuna-dashboard."""
        return self._storage

    @property
    def meta(self) -> dict[str, Any]:
        return dict(self._meta)

    def trials(self) -> list[TrialRecord]:
        """Every candidate of the run in candidate order (in-flight ones as ``running``)."""
        out = [self._record(t) for t in self.study.get_trials(deepcopy=False) if "candidate_id" in t.user_attrs]
        return sorted(out, key=lambda r: r.number)

    def _record(self, t: Any) -> TrialRecord:
        ua = t.user_attrs
        res = ua.get("result") or {}
        state = _STATES.get(t.state.name, "running")
        objectives = {}
        if t.values is not None:
            objectives = dict(zip(self._meta["objectives"], (float(v) for v in t.values)))
        return TrialRecord(number=int(ua["candidate_id"]), state=state, genome=list(ua.get("genome", [])),
                           recipe=ua.get("recipe") or {}, objectives=objectives,
                           scores=res.get("scores", {}) if state != "running" else {},
                           item_scores=res.get("item_scores", {}) if state != "running" else {},
                           timings=res.get("timings", {}) if state != "running" else {},
                           worker=res.get("worker", "") if state != "running" else "",
                           error=res.get("error") if state != "running" else None,
                           seed=ua.get("seed"), started=t.datetime_start, finished=t.datetime_complete,
                           fidelity=res.get("fidelity") or {} if state != "running" else {},
                           rungs=[ua[f"rung{k}"] for k in range(len(ua)) if f"rung{k}" in ua])

    # -- writers -----------------------------------------------------------------------------
    def has_candidate(self, cid: int) -> bool:
        return int(cid) in self._trial_of

    def add_candidate(self, cid: int, genome: list[float], recipe: dict[str, Any], seq: int,
                      seed: int | None = None, meta: dict[str, Any] | None = None) -> None:
        """Create the candidate's trial, RUNNING and fully described, in one transaction."""
        if int(cid) in self._trial_of:
            raise StoreError(f"store {self.url}: candidate {cid} exists already")
        attrs = {"candidate_id": int(cid), "genome": [float(v) for v in genome], "recipe": recipe,
                 "ask_seq": int(seq), "seed": seed, "meta": meta or {}}
        self._trial_of[int(cid)] = self._rows.add_trial(attrs, self._gene_params(genome))

    def _gene_params(self, genome: list[float]) -> list[tuple[str, float, str]]:
        """Each gene as an Optuna parameter with its range (a copy of the genome, for plain Optuna
        tools: optuna-dashboard, ``trial.params``), values clipped into the box as the recipe
        uses them; none when the run has no gene names (huge genomes)."""
        genes = self._meta.get("genes")
        if not genes or len(genes["names"]) != len(genome):
            return []
        if self._gene_dists is None:
            from optuna.distributions import FloatDistribution, distribution_to_json

            self._gene_dists = [distribution_to_json(FloatDistribution(lo, hi))
                                for lo, hi in zip(genes["low"], genes["high"])]
        return [(name, min(max(float(v), lo), hi), dist)
                for name, lo, hi, v, dist in zip(genes["names"], genes["low"], genes["high"], genome, self._gene_dists)]

    def add_rung(self, cid: int, k: int, rung: dict[str, Any]) -> None:
        """One rung of a raced candidate (items [a, b), per-item scores), stored as it arrives."""
        tid = self._trial_of.get(int(cid))
        if tid is None:
            raise StoreError(f"store {self.url}: no trial for candidate {cid}")
        self._rows.set_trial_attr(tid, f"rung{int(k)}", rung)

    def finish(self, cid: int, result: EvalResult, objectives: list[float] | None, seq: int,
               fidelity: dict[str, Any] | None = None) -> str:
        """Store a result and flip the trial to COMPLETE (with objective values) or FAIL, in one
        committed transaction; returns the state stored ("complete" or "failed"). ``fidelity``:
        for a raced candidate, how many items the result rests on."""
        tid = self._trial_of.get(int(cid))
        if tid is None:
            raise StoreError(f"store {self.url}: no trial for candidate {cid}")
        error = result.error
        if error is None and (objectives is None or not all(math.isfinite(v) for v in objectives)):
            error = f"non-finite objective values {objectives}"
        payload = {"scores": result.scores, "item_scores": result.item_scores, "timings": result.timings,
                   "worker": result.worker, "error": error, "tell_seq": int(seq)}
        if fidelity is not None:
            payload["fidelity"] = fidelity
        try:
            self._rows.finish_trial(tid, {"result": payload}, None if error else [float(v) for v in objectives], error)
        except EvomergeError as err:
            raise StoreError(f"store {self.url}: candidate {cid}: {err}") from None
        return "complete" if error is None else "failed"

    def save_searcher_state(self, state: dict[str, Any], seq: int) -> None:
        self._rows.set_study_attr("searcher_state", {"seq": int(seq), "state": state})

    def searcher_state(self) -> tuple[int, dict[str, Any]] | None:
        """(sequence number, state) of the last saved searcher state, or None."""
        saved = self._storage.get_study_user_attrs(self._study_id).get("searcher_state")
        return None if saved is None else (int(saved["seq"]), saved["state"])

    def references(self) -> dict[str, dict[str, Any]]:
        """Reference points scored beside the search (evomerge/runtime/references.py), by name."""
        return dict(self._storage.get_study_user_attrs(self._study_id).get("references") or {})

    def save_reference(self, name: str, payload: dict[str, Any]) -> None:
        self._rows.set_study_attr("references", {**self.references(), name: payload})

    def update_meta(self, **changes: Any) -> None:
        self._meta = {**self._meta, **changes}
        self._rows.set_study_attr("evomerge", self._meta)

    def events(self) -> list[tuple[int, str, TrialRecord]]:
        """Every durable ask and tell as (seq, "ask" | "tell", record), in sequence order.

        A tell counts only when its trial has flipped to a finished state.
        """
        out = []
        for t in self.study.get_trials(deepcopy=False):
            ua = t.user_attrs
            if "candidate_id" not in ua:
                continue
            rec = self._record(t)
            out.append((int(ua["ask_seq"]), "ask", rec))
            if rec.state != "running":
                out.append((int(ua["result"]["tell_seq"]), "tell", rec))
        return sorted(out, key=lambda e: e[0])

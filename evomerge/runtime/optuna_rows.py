"""The run store's writes as plain rows in Optuna's RDB tables, one transaction each.

Optuna's storage API writes through its ORM: creating a trial with 6 attributes and 12
parameters re-reads and re-checks the trial for each of them, and storing a result is two
transactions with more re-reads; together ~20 ms of driver CPU per evaluation, the
difference between busy and idle workers when evaluations take a second. The same rows
written with SQLAlchemy Core, one transaction per step (the trial with its attributes and
parameters; the result with the state flip and the values), cost ~2 ms
(benchmarks/results/store_cost.json) and make each step atomic. The rows are Optuna's, as its
storage writes them (schema v3.2.0.a, checked on open), so Optuna and optuna-dashboard read the
run as before; tests/test_runtime_store.py reads every kind of row back through Optuna's public API.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from evomerge.errors import EvomergeError

SCHEMA = "v3.2.0.a"   # Optuna's alembic revision of the tables written here
TABLES = ("trials", "trial_user_attributes", "trial_system_attributes", "trial_values", "trial_params",
          "study_user_attributes")


def _now() -> datetime:
    """A trial time as Optuna stores it: naive UTC since Optuna 5, naive local time before."""
    import optuna

    if int(optuna.__version__.split(".")[0]) >= 5:
        return datetime.now(timezone.utc).replace(tzinfo=None)
    return datetime.now()


class OptunaRows:
    """Writes of one study's rows. Tables are reflected from the database and the statements
    built once (bound parameters only), so a write is little more than the database's work."""

    def __init__(self, storage: Any, study_id: int, where: str) -> None:
        import sqlalchemy as sa

        version = storage.get_current_version()
        if version != SCHEMA:
            raise EvomergeError(f"store {where}: Optuna schema {version}, this evomerge writes {SCHEMA} "
                                f"(upgrade with `optuna storage upgrade` or use the matching evomerge)")
        self.engine, self.study_id = storage.engine, int(study_id)
        meta = sa.MetaData()
        meta.reflect(self.engine, only=TABLES)
        t = self.t = {name: meta.tables[name] for name in TABLES}
        trials, b = t["trials"], sa.bindparam
        self._count = sa.select(sa.func.count()).select_from(trials).where(trials.c.study_id == b("sid"))
        self._new_trial = trials.insert().values(state="RUNNING")
        self._flip = (sa.update(trials).where(trials.c.trial_id == b("tid"), trials.c.state == "RUNNING")
                      .values(state=b("state"), datetime_complete=b("end")))
        self._state = sa.select(trials.c.state).where(trials.c.trial_id == b("tid"))
        self._inserts = {name: t[name].insert() for name in TABLES}
        self._deletes = {name: sa.delete(t[name]).where(t[name].c[owner] == b("oid"), t[name].c.key == b("k"))
                         for name, owner in (("trial_user_attributes", "trial_id"),
                                             ("trial_system_attributes", "trial_id"),
                                             ("study_user_attributes", "study_id"))}

    def trial_ids(self, key: str) -> dict[Any, int]:
        """Trial id by the value of user attribute ``key``, over the study's trials."""
        import sqlalchemy as sa

        trials, attrs = self.t["trials"], self.t["trial_user_attributes"]
        q = (sa.select(attrs.c.value_json, attrs.c.trial_id).join(trials, trials.c.trial_id == attrs.c.trial_id)
             .where(trials.c.study_id == self.study_id, attrs.c.key == key))
        with self.engine.connect() as conn:
            return {json.loads(v): int(tid) for v, tid in conn.execute(q)}

    def add_trial(self, user_attrs: dict[str, Any], params: list[tuple[str, float, str]]) -> int:
        """A RUNNING trial numbered as Optuna numbers them (trials of the study before it), with its
        user attributes and parameters (name, internal value, distribution JSON): one transaction."""
        with self.engine.begin() as conn:   # (count, then insert: MySQL refuses a subquery on the same table)
            number = conn.execute(self._count, {"sid": self.study_id}).scalar()
            tid = conn.execute(self._new_trial, {"number": number, "study_id": self.study_id,
                                                 "datetime_start": _now()}).inserted_primary_key[0]
            conn.execute(self._inserts["trial_user_attributes"],
                         [{"trial_id": tid, "key": k, "value_json": json.dumps(v)} for k, v in user_attrs.items()])
            if params:
                conn.execute(self._inserts["trial_params"],
                             [{"trial_id": tid, "param_name": n, "param_value": v, "distribution_json": d}
                              for n, v, d in params])
        return int(tid)

    def set_trial_attr(self, tid: int, key: str, value: Any) -> None:
        """Set one user attribute of a RUNNING trial (one transaction)."""
        with self.engine.begin() as conn:
            state = conn.execute(self._state, {"tid": tid}).scalar()
            if state != "RUNNING":
                raise EvomergeError(f"trial {tid} is {state or 'missing'}, not RUNNING: it cannot be changed")
            self._put(conn, "trial_user_attributes", tid, key, value)

    def finish_trial(self, tid: int, user_attrs: dict[str, Any], values: list[float] | None,
                     fail_reason: str | None) -> None:
        """The result's attributes, then COMPLETE with ``values`` or FAIL with ``fail_reason``, in one
        transaction: a result is stored together with its flip or not at all."""
        with self.engine.begin() as conn:
            state = "COMPLETE" if fail_reason is None else "FAIL"
            if conn.execute(self._flip, {"tid": tid, "state": state, "end": _now()}).rowcount != 1:
                raise EvomergeError(f"trial {tid} is finished or missing: its result cannot be stored again")
            for k, v in user_attrs.items():
                self._put(conn, "trial_user_attributes", tid, k, v)
            if fail_reason is None:
                conn.execute(self._inserts["trial_values"],
                             [{"trial_id": tid, "objective": i, "value": float(v), "value_type": "FINITE"}
                              for i, v in enumerate(values or [])])
            else:
                self._put(conn, "trial_system_attributes", tid, "fail_reason", fail_reason)

    def set_study_attr(self, key: str, value: Any) -> None:
        with self.engine.begin() as conn:
            self._put(conn, "study_user_attributes", self.study_id, key, value)

    def _put(self, conn: Any, table: str, oid: int, key: str, value: Any) -> None:
        """Insert or replace one attribute row (delete + insert: portable across databases)."""
        owner = "study_id" if table.startswith("study") else "trial_id"
        conn.execute(self._deletes[table], {"oid": oid, "k": key})
        conn.execute(self._inserts[table], {owner: oid, "key": key, "value_json": json.dumps(value)})

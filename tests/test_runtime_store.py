"""The run store on Optuna's RDB storage: what is written, when it counts, how it reads back."""

from __future__ import annotations

import optuna
import pytest

from evomerge.evaluate.result import EvalResult
from evomerge.runtime.store import RunStore, StoreError, locate_run, sqlite_url, write_run_file

RECIPE = {"kind": "parameter", "method": "linear", "sources": [{"model": "zoo:a"}]}


@pytest.fixture
def store(tmp_path):
    run_dir = tmp_path / "runs" / "r1"
    url = sqlite_url(run_dir / "store.db")
    run_dir.mkdir(parents=True)
    s = RunStore.create(url, "r1", experiment={"name": "r1", "budget": 3}, searcher="cmaes",
                        objectives={"acc": "maximize", "ppl": "minimize"}, budget=3)
    write_run_file(run_dir, url, "r1")
    return s


def test_trials_are_written_and_read_back(store, tmp_path):
    store.add_candidate(0, [0.5, 1.5], RECIPE, seq=0, seed=7, meta={"generation": 0})
    store.add_candidate(1, [0.1, 0.2], RECIPE, seq=1, seed=7)
    store.finish(0, EvalResult(0, scores={"t": 0.8}, item_scores={"t": [1.0, 0.0]}, timings={"score": 0.1},
                               worker="w0"), [0.8, 3.2], seq=2)
    store.add_candidate(2, [0.3, 0.3], RECIPE, seq=3)
    store.finish(1, EvalResult(1, error="NaN weights", worker="w1"), None, seq=4)

    again = RunStore.open(tmp_path / "runs" / "r1")
    recs = again.trials()
    assert [(r.number, r.state) for r in recs] == [(0, "complete"), (1, "failed"), (2, "running")]
    assert recs[0].objectives == {"acc": 0.8, "ppl": 3.2} and recs[0].item_scores == {"t": [1.0, 0.0]}
    assert recs[0].genome == [0.5, 1.5] and recs[0].recipe == RECIPE and recs[0].seed == 7
    assert recs[0].worker == "w0" and recs[0].finished is not None
    assert recs[1].error == "NaN weights" and recs[1].objectives == {}
    assert recs[2].scores == {} and recs[2].error is None
    info = again.info()
    assert info.objectives == {"acc": "maximize", "ppl": "minimize"} and info.searcher == "cmaes"
    assert info.budget == 3 and info.experiment["name"] == "r1"


def test_optuna_sees_objectives_and_failures(store):
    store.add_candidate(0, [0.0], RECIPE, seq=0)
    store.finish(0, EvalResult(0, scores={"t": 1.0}), [0.9, 2.0], seq=1)
    store.add_candidate(1, [1.0], RECIPE, seq=2)
    store.finish(1, EvalResult(1, error="worker died"), None, seq=3)
    study = optuna.load_study(study_name="r1", storage=store.url)
    t0, t1 = study.get_trials()
    assert t0.state == optuna.trial.TrialState.COMPLETE and t0.values == [0.9, 2.0]
    assert t1.state == optuna.trial.TrialState.FAIL and t1.system_attrs["fail_reason"] == "worker died"
    assert study.metric_names == ["acc", "ppl"]
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]


def test_non_finite_objectives_are_stored_as_failures(store):
    store.add_candidate(0, [0.0], RECIPE, seq=0)
    store.finish(0, EvalResult(0, scores={"t": float("nan")}), [float("nan"), 1.0], seq=1)
    assert store.trials()[0].state == "failed" and "non-finite" in store.trials()[0].error


def test_a_result_counts_only_once_its_trial_flipped(store):
    """A result attribute on a RUNNING trial (what a kill between the two writes of earlier
    versions left) does not count, and the evaluation stored again replaces it."""
    store.add_candidate(0, [0.0], RECIPE, seq=0)
    sid = store.storage.get_study_id_from_name("r1")
    tid = store.storage.get_trial_id_from_study_id_trial_number(sid, 0)
    store.storage.set_trial_user_attr(tid, "result", {"scores": {"t": 1.0}, "tell_seq": 1})
    reopened = RunStore.open(store.url)
    assert reopened.trials()[0].state == "running" and reopened.trials()[0].scores == {}
    assert [(seq, kind) for seq, kind, _ in reopened.events()] == [(0, "ask")]
    reopened.finish(0, EvalResult(0, scores={"t": 0.5}), [0.5, 1.0], seq=2)
    assert RunStore.open(store.url).trials()[0].scores == {"t": 0.5}
    with pytest.raises(StoreError, match="candidate 0: .*finished"):
        reopened.finish(0, EvalResult(0, scores={"t": 0.5}), [0.5, 1.0], seq=3)


def test_rows_read_back_through_optunas_api(tmp_path):
    """The store writes Optuna's rows itself (runtime/optuna_rows.py): Optuna reads every kind
    back as its own storage would have written it (numbers, times, attributes, parameters)."""
    from datetime import datetime, timedelta

    from evomerge.runtime.store import gene_meta

    url = sqlite_url(tmp_path / "s.db")
    s = RunStore.create(url, "g", experiment={}, searcher="cmaes", objectives={"acc": "maximize"}, budget=4,
                        extra={"genes": gene_meta(["w0", "w1"], [0.0, 0.0], [2.0, 1.0])})
    optuna.create_study(storage=url, study_name="other").enqueue_trial({})   # trials of another study
    s.add_candidate(0, [0.5, 1.5], RECIPE, seq=0, seed=3, meta={"generation": 0})
    s.add_rung(0, 0, {"items": [0, 4], "item_scores": {"t": [1, 0, 1, 1]}})
    s.finish(0, EvalResult(0, scores={"t": 0.75}), [0.75], seq=1)
    s.add_candidate(1, [0.1, 0.2], RECIPE, seq=2)
    s.finish(1, EvalResult(1, error="boom"), None, seq=3)
    s.add_candidate(2, [0.3, 0.3], RECIPE, seq=4)
    s.save_searcher_state({"mean": [1.0]}, seq=4)
    t0, t1, t2 = optuna.load_study(study_name="g", storage=url).get_trials()
    assert [t.number for t in (t0, t1, t2)] == [0, 1, 2]
    assert t0.state == optuna.trial.TrialState.COMPLETE and t0.values == [0.75]
    assert t0.params == {"w0": 0.5, "w1": 1.0}                               # clipped into the box
    assert t0.distributions["w1"] == optuna.distributions.FloatDistribution(0.0, 1.0)
    assert t0.user_attrs["rung0"]["items"] == [0, 4] and t0.user_attrs["meta"] == {"generation": 0}
    assert t0.user_attrs["result"]["tell_seq"] == 1 and t0.user_attrs["seed"] == 3
    assert abs(t0.datetime_start - datetime.now()) < timedelta(minutes=1)     # local time, as Optuna's
    assert t0.datetime_start <= t0.datetime_complete
    assert t1.state == optuna.trial.TrialState.FAIL and t1.system_attrs["fail_reason"] == "boom"
    assert t2.state == optuna.trial.TrialState.RUNNING and t2.datetime_complete is None
    again = RunStore.open(url + "#g")
    assert again.searcher_state() == (4, {"mean": [1.0]}) and again.has_candidate(2)
    with pytest.raises(StoreError, match="candidate 2 exists"):
        again.add_candidate(2, [0.0, 0.0], RECIPE, seq=5)


def test_events_and_searcher_state(store):
    store.add_candidate(0, [0.0], RECIPE, seq=0)
    store.add_candidate(1, [1.0], RECIPE, seq=1)
    store.finish(1, EvalResult(1, scores={"t": 1.0}), [1.0, 1.0], seq=2)
    store.save_searcher_state({"searcher": "x", "version": 1, "mean": [0.25]}, seq=2)
    assert [(s, k, r.number) for s, k, r in store.events()] == [(0, "ask", 0), (1, "ask", 1), (2, "tell", 1)]
    assert RunStore.open(store.url).searcher_state() == (2, {"searcher": "x", "version": 1, "mean": [0.25]})


def test_duplicate_runs_and_candidates_are_refused(store):
    with pytest.raises(StoreError, match="exists already"):
        RunStore.create(store.url, "r1", experiment={}, searcher="x", objectives={"a": "maximize"}, budget=1)
    store.add_candidate(0, [0.0], RECIPE, seq=0)
    with pytest.raises(StoreError, match="candidate 0 exists"):
        store.add_candidate(0, [0.0], RECIPE, seq=1)


def test_locating_runs(store, tmp_path):
    run_dir = tmp_path / "runs" / "r1"
    assert locate_run(run_dir) == (store.url, "r1")
    assert locate_run("r1", runs_dir=tmp_path / "runs") == (store.url, "r1")
    assert locate_run(run_dir / "store.db") == (store.url, None)
    assert locate_run(store.url + "#r1") == (store.url, "r1")
    with pytest.raises(StoreError, match="no such run"):
        locate_run(tmp_path / "missing")
    foreign = tmp_path / "plain.db"
    optuna.create_study(storage=sqlite_url(foreign), study_name="other")
    with pytest.raises(StoreError, match="not an evomerge run"):
        RunStore.open(foreign)

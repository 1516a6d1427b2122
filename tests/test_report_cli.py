"""`evomerge status`, `pareto` and `dashboard` on runs written through the real store API."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from helpers_runs import write_run
from helpers_runtime import wait_for
from typer.testing import CliRunner

from evomerge.cli import app
from evomerge.runtime.store import sqlite_url

OBJECTIVES = {"math": "maximize", "words": "maximize"}
# (math, words) per candidate; None marks a failed candidate
VALUES = [(0.2, 0.6), (0.5, 0.5), None, (0.6, 0.55), (0.1, 0.8), (0.4, 0.7), (0.7, 0.2)]
FRONT = {3, 4, 5, 6}


def _recipe(i: int) -> dict:
    return {"kind": "parameter", "method": "ties", "base": "zoo:base",
            "sources": [{"model": "zoo:math", "parameters": {"weight": round(0.1 * i, 2), "density": 0.5}},
                        {"model": "zoo:words", "parameters": {"weight": 1.0, "density": 0.7}}],
            "parameters": {"lambda": 1.0}, "seed": 0}


def make_run(root: Path, name: str = "demo", values=VALUES, running: int = 1) -> Path:
    """runs/NAME filled through RunStore like the loop does; None values are failed candidates."""
    trials = [{"recipe": _recipe(i), **({"error": "NaN in merged weights"} if v is None else {"values": v})}
              for i, v in enumerate(values)]
    extra = [{"recipe": _recipe(len(values) + k)} for k in range(running)]
    return write_run(root, name, OBJECTIVES, trials, running=extra)


def _cli(*args: str):
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    return result


def test_status_counts_best_and_failures(tmp_path):
    run = make_run(tmp_path)
    result = _cli("status", str(run))
    assert result.exit_code == 0, result.output
    out = result.output
    assert "cmaes" in out
    assert "7 of 20 finished: 6 done, 1 failed, 1 running" in out
    assert re.search(r"best math ↑\s+│\s*0\.7 \(trial 6\)", out)
    assert re.search(r"best words ↑\s+│\s*0\.8 \(trial 4\)", out)
    assert "1× NaN in merged weights" in out
    assert "evaluations/hour" in out


def test_status_accepts_a_store_url_and_names_a_missing_run(tmp_path):
    run = make_run(tmp_path)
    url = sqlite_url(run / "store.db")
    assert _cli("status", url).exit_code == 0
    bad = _cli("status", str(tmp_path / "nope"))
    assert bad.exit_code == 2 and "no such run" in bad.output and "Traceback" not in bad.output


def test_status_reads_while_a_writer_is_adding_trials(tmp_path):
    """The writer adds 20 trials as fast as it can, pausing twice until the reader has seen
    the trials so far, so the reader provably reads between writes (no clock involved)."""
    run = make_run(tmp_path, running=0)
    writer = subprocess.Popen([sys.executable, "-c", f"""
import sys
from evomerge.evaluate.result import EvalResult
from evomerge.runtime.store import RunStore
store = RunStore.open({str(run)!r})
for cid in range(100, 120):
    store.add_candidate(cid, [0.0], {{}}, 1000 + 2 * cid)
    store.finish(cid, EvalResult(cid, scores={{"math": 0.3, "words": 0.3}}), [0.3, 0.3], 1001 + 2 * cid)
    if cid in (104, 114):
        sys.stdin.readline()
"""], stdin=subprocess.PIPE, text=True)
    pauses, seen = [6 + 5, 6 + 15], []         # done counts at which the writer waits for the reader
    try:
        while writer.poll() is None:
            result = _cli("status", str(run))
            assert result.exit_code == 0, result.output
            seen.append(int(re.search(r"(\d+) done", result.output).group(1)))
            if pauses and seen[-1] >= pauses[0]:
                assert seen[-1] == pauses.pop(0)
                writer.stdin.write("go\n")
                writer.stdin.flush()
    finally:
        writer.stdin.close()
        writer.wait(timeout=60)
    assert writer.returncode == 0
    final = _cli("status", str(run)).output
    assert "27 of 20 finished: 26 done" in final
    assert seen == sorted(seen) and seen[-1] <= 26
    assert not pauses and {11, 21} <= set(seen)   # the reader really ran while the writer was adding trials


def test_pareto_table_png_and_html(tmp_path):
    run = make_run(tmp_path)
    png, page = tmp_path / "front.png", tmp_path / "front.html"
    result = _cli("pareto", str(run), "--png", str(png), "--html", str(page))
    assert result.exit_code == 0, result.output
    rows = [int(m) for m in re.findall(r"^│\s+(\d+) │", result.output, re.M)]
    assert rows == [6, 3, 5, 4]
    assert "math(w=0.3 d=0.5)" in result.output and "hypervolume" in result.output
    # front progress: 6 completed trials -> after 2, 3, 4 (rounded quarters) and 6 evaluations
    assert re.search(r"after 2 evals: [0-9.]+, 3 evals: [0-9.]+, 4 evals: [0-9.]+, 6 evals: [0-9.]+", result.output)
    assert png.read_bytes()[:4] == b"\x89PNG"
    data = json.loads(re.search(r'id="run-data">(.*?)</script>', page.read_text(), re.S).group(1))
    assert sorted(p["trial"] for p in data["points"]) == [0, 1, 3, 4, 5, 6]
    assert {p["trial"] for p in data["points"] if p["left"] == -1} == FRONT


def test_pareto_objective_choice_and_reference(tmp_path):
    run = make_run(tmp_path)
    one = _cli("pareto", str(run), "--objectives", "math", "--reference", "0")
    assert one.exit_code == 0, one.output
    assert [int(m) for m in re.findall(r"^│\s+(\d+) │", one.output, re.M)] == [6]
    assert "hypervolume 0.7 " in one.output
    flipped = _cli("pareto", str(run), "--objectives", "math:min,words:min", "--reference", "1,1")
    assert [int(m) for m in re.findall(r"^│\s+(\d+) │", flipped.output, re.M)] == [4, 0, 1, 6]
    bad = _cli("pareto", str(run), "--objectives", "speed")
    assert bad.exit_code == 2 and "'speed' is not an objective" in bad.output
    bad_ref = _cli("pareto", str(run), "--reference", "0")
    assert bad_ref.exit_code == 2 and "--reference: 1 values for 2 objectives" in bad_ref.output


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dashboard_serves_the_run_on_localhost_only(tmp_path):
    pytest.importorskip("optuna_dashboard")
    import psutil

    run = make_run(tmp_path)
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "evomerge.cli", "dashboard", str(run), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:

        def answer() -> bytes | None:
            try:
                return urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2).read()
            except OSError:
                assert proc.poll() is None, proc.stdout.read().decode()
                return None

        body = wait_for(answer, 120, "the dashboard to answer", every=0.25)
        assert any(s["study_name"] == "demo" for s in json.loads(body)["study_summaries"])
        listening = [c.laddr for c in psutil.Process(proc.pid).net_connections() if c.status == psutil.CONN_LISTEN]
        assert listening and all(addr.ip == "127.0.0.1" for addr in listening)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_status_times_and_throughput_from_stored_timestamps():
    from datetime import datetime, timedelta

    from evomerge.report.status import run_status
    from evomerge.runtime.records import RunInfo, TrialRecord

    t0 = datetime(2026, 11, 25, 12, 0, 0)
    info = RunInfo("r", {}, "m2n2", {"loss": "minimize"}, budget=None, started=t0)
    trials = [TrialRecord(i, "complete", [], {}, {"loss": 1.0 / (i + 1)}, started=t0 + timedelta(minutes=i),
                          finished=t0 + timedelta(minutes=i + 1)) for i in range(6)]
    trials.append(TrialRecord(6, "failed", [], {}, {}, error="oom\ntrace", finished=t0 + timedelta(minutes=12)))
    st = run_status(info, trials, now=t0 + timedelta(minutes=30))
    assert (st.done, st.failed, st.running) == (6, 1, 0)
    assert st.elapsed_s == 12 * 60 and st.per_hour == pytest.approx(7 / 12 * 60)   # finished run: up to its last result
    assert st.since_last_s == 18 * 60
    assert [(b.objective, b.trial) for b in st.best] == [("loss", 5)]
    assert st.failures == [("oom", 1)]
    trials.append(TrialRecord(7, "running", [], {}, {}, started=t0 + timedelta(minutes=13)))
    assert run_status(info, trials, now=t0 + timedelta(minutes=30)).elapsed_s == 30 * 60  # still going: up to now

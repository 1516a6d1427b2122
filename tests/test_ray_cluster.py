"""`evomerge run --address` on a real two-node Ray cluster on this machine; the second node is
killed mid-run and the run still stores every candidate.

Both nodes live on loopback addresses: Ray rewrites a node address of 127.0.0.1 to the
machine's network address unless the node is alone, so the head runs as 127.0.0.3 and the
second node as 127.0.0.2. Each node is its own process session, so killing one kills exactly
its raylet, agents and workers.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from helpers_runtime import clean_env, finished, wait_for

from evomerge.runtime.store import RunStore

RAY = str(Path(sys.executable).with_name("ray"))
HEAD_IP, NODE2_IP = "127.0.0.3", "127.0.0.2"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_node(args: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen([RAY, "start", "--block", "--disable-usage-stats", "--num-cpus=1",
                             "--dashboard-agent-listen-port=0", *args], stdout=log.open("w"),
                            stderr=subprocess.STDOUT, env=clean_env(), start_new_session=True)


def kill_session(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def nodes_alive(address: str) -> int:
    out = subprocess.run([RAY, "status", f"--address={address}"], capture_output=True, text=True,
                         env=clean_env(), timeout=60).stdout
    return sum(line.strip().startswith("1 node_") for line in out.split("Pending:")[0].splitlines())


def wait_started(log: Path) -> None:
    wait_for(lambda: "Ray runtime started" in log.read_text(), 180, lambda: log.read_text()[-2000:], every=0.2)


@contextlib.contextmanager
def two_node_cluster(logs: Path):
    port, temp = free_port(), tempfile.mkdtemp(prefix="evo-ray-", dir="/tmp")
    address = f"{HEAD_IP}:{port}"
    procs = []
    try:
        procs.append(start_node(["--head", f"--port={port}", f"--node-ip-address={HEAD_IP}",
                                 "--include-dashboard=false", f"--ray-client-server-port={free_port()}",
                                 f"--temp-dir={temp}", '--resources={"node1": 1}'], logs / "head.log"))
        wait_started(logs / "head.log")
        procs.append(start_node([f"--address={address}", f"--node-ip-address={NODE2_IP}",
                                 '--resources={"node2": 1}'], logs / "node2.log"))
        wait_started(logs / "node2.log")
        wait_for(lambda: nodes_alive(address) >= 2, 180, "node 2 to join", every=0.5)
        yield address, procs[1]
    finally:
        for proc in reversed(procs):
            kill_session(proc)
        subprocess.run(["rm", "-rf", temp], check=False)


@pytest.mark.slow
def test_search_on_two_nodes_survives_losing_one(tmp_path):
    budget = 16
    exp = {
        "name": "cluster", "models": {"base": "zoo:base", "sources": ["zoo:a", "zoo:b"]},
        "search_space": {"kind": "parameter", "method": "dare_ties", "weight": {"low": 0.0, "high": 2.0}},
        "fitness": {"tasks": ["sphere"], "options": {"sleep": 0.7}},
        "searcher": {"name": "random"}, "budget": budget, "seed": 1,
        "backend": "evomerge.runtime.simulated:SimulatedEvaluator",
        "workers": 2, "resources": {"cpus_per_worker": 0.5, "custom": [{"node1": 0.5}, {"node2": 0.5}],
                                    "timeout_s": 60},
    }
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(exp))
    db = tmp_path / "runs" / "cluster" / "store.db"
    with two_node_cluster(tmp_path) as (address, node2):
        run = subprocess.Popen([sys.executable, "-m", "evomerge.cli", "run", "exp.yaml", "--address", address,
                                "--no-progress"], cwd=tmp_path, env=clean_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
        try:

            def four_done() -> bool:                      # both nodes are working by now
                assert run.poll() is None, run.communicate()[0][-3000:]
                return finished(db) >= 4

            wait_for(four_done, 180, "4 evaluations stored")
            kill_session(node2)
            out, _ = run.communicate(timeout=180)
        finally:
            if run.poll() is None:
                run.kill()
        assert run.returncode == 0, out[-3000:]
    assert re.search(r"ray: 2 workers, 16 evaluations, \d+% busy; [1-9]\d* workers replaced, [1-9]\d* jobs re-run", out), out
    trials = RunStore.open(tmp_path / "runs" / "cluster").trials()
    assert len(trials) == budget and all(t.state == "complete" for t in trials), \
        [(t.number, t.state, t.error) for t in trials]
    nodes = {t.worker.split("@")[1].split(":")[0] for t in trials}
    assert nodes == {HEAD_IP, NODE2_IP}
    late = [t for t in trials if t.finished and t.number >= budget - 4]
    assert all(NODE2_IP not in t.worker for t in late)   # after the loss, only the head works

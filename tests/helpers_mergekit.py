"""Run mergekit 0.1.5 (the oracle, in its own venv) on several configs in one process."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
MERGEKIT_VENV = ROOT / ".venv-mergekit"
MERGEKIT_PYTHON = MERGEKIT_VENV / "bin" / "python"
MERGEKIT_YAML = MERGEKIT_VENV / "bin" / "mergekit-yaml"

# The same as `mergekit-yaml CONFIG OUT` per pair, without paying its start-up once per config.
DRIVER = """
import sys, traceback, yaml
from mergekit.config import MergeConfiguration
from mergekit.merge import run_merge
from mergekit.options import MergeOptions
for cfg, out in zip(sys.argv[1::2], sys.argv[2::2]):
    try:
        with open(cfg) as f:
            run_merge(MergeConfiguration.model_validate(yaml.safe_load(f)), out, options=MergeOptions())
    except Exception:
        open(out + ".error", "w").write(traceback.format_exc())
"""


def have_mergekit() -> bool:
    return MERGEKIT_YAML.exists() and MERGEKIT_PYTHON.exists()


def run_mergekit(jobs: dict[str, dict], root: Path) -> dict[str, Path]:
    """Merge each named config with mergekit; returns name -> output dir (or its .error file)."""
    args, outs = [], {}
    for name, cfg in jobs.items():
        cfg_path = root / f"{name}.yaml"
        cfg_path.write_text(yaml.safe_dump(cfg))
        outs[name] = root / f"mk_{name}"
        args += [str(cfg_path), str(outs[name])]
    subprocess.run([str(MERGEKIT_PYTHON), "-c", DRIVER, *args], check=True, capture_output=True, timeout=900)
    return {n: (p if p.exists() else Path(str(p) + ".error")) for n, p in outs.items()}


def oracle_run(configs: dict[str, dict], root: Path) -> tuple[dict[str, dict], dict[str, Path], Path]:
    """Every config merged by mergekit under `root` (the value an oracle fixture returns)."""
    return configs, run_mergekit(configs, root), root


def ours_and_theirs(oracle: tuple[dict[str, dict], dict[str, Path], Path], name: str) -> tuple[dict, dict]:
    """The tensors evomerge and mergekit make from config `name` of an oracle run."""
    from evomerge.engine import merge_to_disk
    from evomerge.mergekit_config import from_mergekit
    from helpers_engine import load_tensors

    cfgs, outs, root = oracle
    assert outs[name].is_dir(), outs[name].read_text()
    return load_tensors(merge_to_disk(from_mergekit(cfgs[name]), root / f"ours_{name}")), load_tensors(outs[name])

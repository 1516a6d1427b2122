"""vLLM's log lines go to ``vllm.log`` in the run folder, not to the user's terminal.

vLLM configures its ``vllm`` logger itself, at import and again whenever an engine starts, from
the file named by ``VLLM_LOGGING_CONFIG_PATH`` when set. So the redirection is such a file: every
record into the log file, errors also to stderr (one line each; its warnings on CPU are about the
environment: tcmalloc, thread binding, Triton). The engine starts
before a new run's folder exists (a failed start must leave nothing behind), so the log begins
in a temporary file and moves into the folder once the run is created. A user's own
``VLLM_LOGGING_CONFIG_PATH`` or ``VLLM_CONFIGURE_LOGGING=0`` is left alone.
"""

from __future__ import annotations

import atexit
import json
import logging.config
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

LOG_FILE = "vllm.log"
CONFIG_ENV = "VLLM_LOGGING_CONFIG_PATH"


def _config(log_path: Path) -> dict[str, Any]:
    return {
        "version": 1, "disable_existing_loggers": False,
        "formatters": {"line": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
        "handlers": {"file": {"class": "logging.FileHandler", "filename": str(log_path), "mode": "a",
                              "formatter": "line", "encoding": "utf-8"},
                     "stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr",
                                "level": "ERROR", "formatter": "line"}},
        "loggers": {"vllm": {"handlers": ["file", "stderr"], "level": os.environ.get("VLLM_LOGGING_LEVEL", "INFO"),
                             "propagate": False}},
    }


class EngineLogs:
    """Owns the redirection for one `evomerge run`; ``close`` restores the environment."""

    def __init__(self, run_dir: Path | None = None) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="evomerge-vllm-logs-"))
        self._env = {CONFIG_ENV: os.environ.get(CONFIG_ENV)}
        self.path = run_dir / LOG_FILE if run_dir is not None and run_dir.is_dir() else self._dir / LOG_FILE
        self._point_at(self.path)
        atexit.register(self.close)

    @classmethod
    def start(cls, run_dir: Path | None) -> "EngineLogs | None":
        """Redirect into ``run_dir/vllm.log`` (or a temporary file until ``move_into``), unless
        the user configures vLLM's logging."""
        if os.environ.get(CONFIG_ENV) or os.environ.get("VLLM_CONFIGURE_LOGGING", "1") == "0":
            return None
        return cls(run_dir)

    def _point_at(self, log_path: Path) -> None:
        config = _config(log_path)
        cfg_file = self._dir / "logging.json"
        cfg_file.write_text(json.dumps(config))
        os.environ[CONFIG_ENV] = str(cfg_file)
        if logging.getLogger("vllm").handlers:  # vLLM configured already (an engine ran before)
            logging.config.dictConfig(config)

    def move_into(self, run_dir: Path) -> Path:
        """Continue the log in ``run_dir/vllm.log``, with what was written so far."""
        target = run_dir / LOG_FILE
        if self.path != target:
            with open(target, "ab") as out:
                if self.path.is_file():
                    out.write(self.path.read_bytes())
            old, self.path = self.path, target
            self._point_at(target)
            old.unlink(missing_ok=True)
        return target

    def close(self) -> None:
        """Stop writing (handlers closed), restore the environment, remove temporary files."""
        if not self._dir.exists():
            return
        for handler in list(logging.getLogger("vllm").handlers):
            if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename) == self.path.resolve():
                logging.getLogger("vllm").removeHandler(handler)
                handler.close()
        for key, value in self._env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(self._dir, ignore_errors=True)

"""Compiled CPU kernels, one per variant, cached in memory and on disk.

Each kernel's source is written into a module file in the cache folder (named by the source's
hash, so a changed generator never meets a stale file) and imported from there, so that numba's
on-disk cache spares every later process (Ray workers, test runs) the ~1 s compile.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from evomerge.ops.fused.codegen import kernel_source

_kernels: dict[tuple, Any] = {}
_lock = threading.Lock()


def kernel(*key: Any) -> Any:
    """The compiled kernel for `key` (see codegen.kernel_source), compiled on first use."""
    fn = _kernels.get(key)
    if fn is None:
        with _lock:
            fn = _kernels.get(key)
            if fn is None:
                fn = _kernels[key] = load(key)
    return fn


def kernel_cache_dir() -> Path:
    """$EVOMERGE_KERNEL_CACHE, else ~/.cache/evomerge/kernels (created on first use)."""
    env = os.environ.get("EVOMERGE_KERNEL_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "evomerge" / "kernels"


def load(key: tuple) -> Any:
    """Compile the kernel for `key` through its module file in the cache folder (in memory,
    every process, when the folder cannot be written)."""
    src = kernel_source(key)
    digest = hashlib.sha256(src.encode()).hexdigest()[:16]
    folder = kernel_cache_dir()
    path = folder / f"fused_{digest}.py"
    try:
        if not path.exists():
            folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
            with os.fdopen(fd, "w") as f:
                f.write(src + "\n")
            os.replace(tmp, path)  # atomic: concurrent workers never import half a file
    except OSError:  # no writable cache: compile in memory, every process
        ns: dict = {}
        exec(compile(src.replace("cache=True", "cache=False"), str(path), "exec"), ns)
        return ns["kernel"]
    name = f"evomerge_fused_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # numba's cache finds the kernel's globals through it
    spec.loader.exec_module(module)
    return module.kernel

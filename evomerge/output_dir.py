"""Directories written whole or not at all: a checkpoint, an export or a zoo model appears in
one rename or not at all (a killed writer leaves only a hidden temporary folder, which the next
write beside it removes). Torch-free, below the engine and the zoo that both write this way."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from evomerge.errors import CheckpointError


def check_output_dir(out: Path, force: bool) -> None:
    """Refuse to overwrite a non-empty directory (or a file) unless forced."""
    if out.exists() and (out.is_file() or any(out.iterdir())) and not force:
        raise CheckpointError(f"{out}: output exists and is not empty (pass --force to replace it)")


STALE_TEMP = re.compile(r"\..+\.tmp-(\d+)-[0-9a-f]{8}")   # what atomic_output_dir names them


def remove_stale_temps(out: Path) -> list[Path]:
    """Delete the temporary folders that earlier writes into ``out``'s folder left when they were
    killed (nothing else would remove them: gigabytes at real size); those of live processes stay."""
    removed = []
    for tmp in out.parent.glob(".*.tmp-*-*"):
        match = STALE_TEMP.fullmatch(tmp.name)
        if match and tmp.is_dir() and not _alive(int(match.group(1))):
            shutil.rmtree(tmp, ignore_errors=True)
            removed.append(tmp)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


@contextlib.contextmanager
def atomic_output_dir(out: str | Path, force: bool = False) -> Iterator[Path]:
    """Yield a temporary directory beside `out`; on success it replaces `out` in one rename,
    on any failure (Ctrl-C included) it is deleted and `out` is left as it was."""
    out = Path(out)
    check_output_dir(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        old = None
        if out.exists():
            old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(out, old)
        os.rename(tmp, out)
        if old is not None:
            shutil.rmtree(old) if old.is_dir() else old.unlink()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

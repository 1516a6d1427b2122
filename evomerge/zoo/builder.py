"""Build the zoo: pretrain the base, fine-tune one expert per skill, save HF checkpoints.

The build is deterministic in (seed, threads, torch version), atomic (a temp dir renamed into
place), locked (concurrent builders wait for the first), and skipped when ``manifest.json``
already describes an up-to-date zoo with matching weight hashes.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from evomerge.errors import CheckpointError
from evomerge.zoo.stages import MODELS, STACKED_ON, STAGES

ZOO_VERSION = 1
DEFAULT_SEED = 0
DEFAULT_THREADS = 1


def default_zoo_dir() -> Path:
    """``$EVOMERGE_ZOO`` or ``~/.cache/evomerge/zoo``."""
    env = os.environ.get("EVOMERGE_ZOO")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "evomerge" / "zoo"


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


CODE_FILES = ("vocab.py", "corpus.py", "mixes.py", "stages.py", "train.py")


def code_hash() -> str:
    """Hash of the modules that decide the weights: editing any of them invalidates a cached zoo."""
    h = hashlib.sha256()
    for name in CODE_FILES:
        h.update((Path(__file__).parent / name).read_bytes())
    return h.hexdigest()[:16]


def _expected(seed: int, threads: int) -> dict:
    import torch
    import transformers

    return {"zoo_version": ZOO_VERSION, "code": code_hash(), "seed": seed, "threads": threads,
            "torch": torch.__version__, "transformers": transformers.__version__,
            "stages": {k: {"parent": p, "mix": m, "schedule": asdict(s)} for k, (p, m, s) in STAGES.items()},
            "stacked_on": STACKED_ON}


def is_up_to_date(out: Path, seed: int = DEFAULT_SEED, threads: int = DEFAULT_THREADS) -> bool:
    """True when out holds a complete zoo built with these settings and intact weights."""
    try:
        manifest = json.loads((out / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    if any(manifest.get(k) != v for k, v in _expected(seed, threads).items()):
        return False
    hashes = manifest.get("sha256", {})
    return all((out / n / "model.safetensors").is_file() and hashes.get(n) == sha256(out / n / "model.safetensors")
               for n in MODELS)


def _save(model, out: Path) -> None:
    from evomerge.zoo.vocab import save_tokenizer

    model.save_pretrained(str(out), safe_serialization=True)
    save_tokenizer(out)


def _build_into(tmp: Path, seed: int, log: Callable[[str], None]) -> dict:
    import copy

    from evomerge.zoo.train import new_model, train, train_stacked

    models, timings = {}, {}
    for name, (parent, mix, schedule) in STAGES.items():
        t0, c0 = time.perf_counter(), time.process_time()
        model = new_model(seed) if parent is None else copy.deepcopy(models[parent])
        if name in STACKED_ON:
            train_stacked(model, models[STACKED_ON[name]], mix, schedule, seed, log)
        else:
            train(model, mix, schedule, seed, log)
        _save(model, tmp / name)
        models[name] = model
        timings[name] = {"wall": round(time.perf_counter() - t0, 1), "cpu": round(time.process_time() - c0, 1)}
        log(f"{name}: trained in {timings[name]['wall']} s ({timings[name]['cpu']} s CPU)")
    return timings


def build(out: Path | None = None, seed: int = DEFAULT_SEED, force: bool = False,
          threads: int = DEFAULT_THREADS, log: Callable[[str], None] | None = None) -> Path:
    """Build the zoo into ``out`` (default: default_zoo_dir()) unless it is already up to date."""
    import torch

    from evomerge.output_dir import atomic_output_dir

    out = Path(out) if out is not None else default_zoo_dir()
    log = log or (lambda _msg: None)
    if not force and is_up_to_date(out, seed, threads):  # fast path: no waiting on a running builder
        log(f"zoo at {out} is up to date (seed {seed})")
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f".{out.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a concurrent builder waits, then finds it up to date
        if not force and is_up_to_date(out, seed, threads):
            log(f"zoo at {out} is up to date (seed {seed})")
            return out
        old_threads = torch.get_num_threads()
        torch.set_num_threads(threads)
        t0 = time.perf_counter()
        try:
            with atomic_output_dir(out, force=True) as tmp:
                timings = _build_into(tmp, seed, log)
                manifest = _expected(seed, threads) | {
                    "models": list(MODELS), "seconds": timings,
                    "total_seconds": round(time.perf_counter() - t0, 1),
                    "load_average": os.getloadavg(),
                    "sha256": {n: sha256(tmp / n / "model.safetensors") for n in MODELS},
                }
                (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        finally:
            torch.set_num_threads(old_threads)
        log(f"zoo built at {out} in {manifest['total_seconds']} s")
        return out


def resolve(ref: str, zoo_dir: Path | None = None) -> Path:
    """``zoo:NAME`` -> the directory of that zoo model (CheckpointError if missing)."""
    if not ref.startswith("zoo:"):
        raise CheckpointError(f"{ref}: not a zoo reference (expected zoo:NAME)")
    name = ref[4:]
    if name not in MODELS:
        raise CheckpointError(f"{ref}: unknown zoo model (known: {', '.join(MODELS)})")
    root = Path(zoo_dir) if zoo_dir is not None else default_zoo_dir()
    path = root / name
    if not (path / "model.safetensors").is_file():
        raise CheckpointError(f"{ref}: zoo not built at {root} (run `evomerge zoo build`)")
    return path

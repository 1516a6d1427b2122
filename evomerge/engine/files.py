"""The non-tensor files of an HF checkpoint: config, generation config, tokenizer."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "tokenizer.model", "vocab.json", "merges.txt", "added_tokens.json",
                   "chat_template.jinja", "chat_template.json")
DTYPE_NAMES = {"float32", "bfloat16", "float16"}


def write_config(src_folder: Path, out: Path, dtype: str | None, **overrides) -> None:
    """config.json of the reference model, with the output dtype (and overrides) set."""
    f = src_folder / "config.json"
    if not f.exists():
        return
    cfg = json.loads(f.read_text())
    if dtype in DTYPE_NAMES:
        for key in ("torch_dtype", "dtype"):
            if key in cfg or key == "torch_dtype":
                cfg[key] = dtype
    cfg.update(overrides)
    (out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")


def copy_side_files(config_folder: Path, tokenizer_folder: Path, out: Path) -> list[str]:
    """generation_config.json from the reference model, tokenizer files from the tokenizer source."""
    copied = []
    gen = config_folder / "generation_config.json"
    if gen.exists():
        shutil.copyfile(gen, out / gen.name)
        copied.append(gen.name)
    for name in TOKENIZER_FILES:
        f = tokenizer_folder / name
        if f.exists():
            shutil.copyfile(f, out / name)
            copied.append(name)
    if not any(n in copied for n in ("tokenizer.json", "tokenizer.model", "vocab.json")):
        log.warning("%s: no tokenizer files found; the output has no tokenizer", tokenizer_folder)
    return copied

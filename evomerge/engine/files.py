"""The non-tensor files of an HF checkpoint: config, generation config, tokenizer."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from evomerge.ops import DTYPES

log = logging.getLogger(__name__)

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "tokenizer.model", "vocab.json", "merges.txt", "added_tokens.json",
                   "chat_template.jinja", "chat_template.json")


def with_dtype(cfg: dict, dtype: str | None) -> dict:
    """A model config with its dtype field(s) set to `dtype` (unchanged for None)."""
    cfg = dict(cfg)
    if dtype in DTYPES:
        for key in ("torch_dtype", "dtype"):
            if key in cfg or key == "torch_dtype":
                cfg[key] = dtype
    return cfg


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

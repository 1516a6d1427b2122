"""Vocabularies of local HF tokenizers (tokenizer.json), compared: mergekit's `union`
tokenizer is the same tokenizer when every model's vocabulary is the same, and evomerge reads
it only then (building a union needs new embedding rows, a different merge)."""

from __future__ import annotations

import json
from pathlib import Path


def vocabulary(folder: Path) -> dict[str, int] | None:
    """token -> id (the model's vocabulary plus added tokens); None without tokenizer.json."""
    path = Path(folder) / "tokenizer.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    vocab = data.get("model", {}).get("vocab")
    if isinstance(vocab, dict):
        out = dict(vocab)
    elif isinstance(vocab, list):  # Unigram: [token, score] in id order
        out = {entry[0]: i for i, entry in enumerate(vocab)}
    else:
        return None
    for tok in data.get("added_tokens", []):
        out[tok["content"]] = tok["id"]
    return out


def first_difference(folders: list[Path]) -> str | None:
    """None when every folder's vocabulary is the same; else one phrase saying where they
    first differ (or that one cannot be read)."""
    ref = vocabulary(folders[0])
    if ref is None:
        return f"{folders[0]} has no tokenizer.json to compare"
    for folder in folders[1:]:
        other = vocabulary(folder)
        if other is None:
            return f"{folder} has no tokenizer.json to compare"
        if other == ref:
            continue
        extra = sorted(set(other) - set(ref), key=other.get)
        missing = sorted(set(ref) - set(other), key=ref.get)
        moved = sorted((t for t in set(ref) & set(other) if ref[t] != other[t]), key=ref.get)
        if extra:
            what = f"{folder.name} has {len(extra)} token(s) {folders[0].name} lacks, first {extra[0]!r}"
        elif missing:
            what = f"{folder.name} lacks {len(missing)} token(s) of {folders[0].name}, first {missing[0]!r}"
        else:
            t = moved[0]
            what = f"{len(moved)} token(s) have other ids, first {t!r}: {ref[t]} in {folders[0].name}, {other[t]} in {folder.name}"
        return what
    return None

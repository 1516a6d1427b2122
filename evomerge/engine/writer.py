"""Streaming sharded safetensors writer and atomic output directories.

The layout (names, shapes, dtypes) is known before merging starts, so each shard's header is
written first and every tensor's bytes are appended the moment it is computed: nothing is
buffered beyond one tensor."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

from evomerge.engine.files import copy_side_files
from evomerge.engine.reader import ST_DTYPES
from evomerge.output_dir import atomic_output_dir

DTYPE_CODES = {v: k for k, v in ST_DTYPES.items()}
DEFAULT_SHARD_BYTES = 2 * 1024**3


def nbytes(shape: Sequence[int], dtype: torch.dtype) -> int:
    return math.prod(shape) * torch.empty((), dtype=dtype).element_size()


class ShardedWriter:
    """Writes tensors in the announced order into HF-style shards (+ index when > 1 shard)."""

    def __init__(self, folder: Path, layout: Sequence[tuple[str, tuple[int, ...], torch.dtype]],
                 max_shard_bytes: int = DEFAULT_SHARD_BYTES) -> None:
        self.folder = Path(folder)
        groups: list[list[tuple[str, tuple[int, ...], torch.dtype]]] = [[]]
        size = 0
        for entry in layout:
            b = nbytes(entry[1], entry[2])
            if groups[-1] and size + b > max_shard_bytes:
                groups.append([])
                size = 0
            groups[-1].append(entry)
            size += b
        n = len(groups)
        self.files = ["model.safetensors"] if n == 1 else [
            f"model-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)]
        self._groups = groups
        self._order = [(gi, e) for gi, g in enumerate(groups) for e in g]
        self._pos = 0
        self._fh = None
        self._shard = -1
        self.total_size = sum(nbytes(s, d) for _, s, d in layout)

    def _open(self, gi: int) -> None:
        if self._fh is not None:
            self._fh.close()
        header, off = {}, 0
        for name, shape, dtype in self._groups[gi]:
            b = nbytes(shape, dtype)
            header[name] = {"dtype": DTYPE_CODES[dtype], "shape": list(shape), "data_offsets": [off, off + b]}
            off += b
        header["__metadata__"] = {"format": "pt"}
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)
        self._fh = open(self.folder / self.files[gi], "wb")
        self._fh.write(len(raw).to_bytes(8, "little"))
        self._fh.write(raw)
        self._shard = gi

    def write(self, name: str, tensor: torch.Tensor) -> None:
        """Append the next tensor; it must be the next one of the layout, same shape and dtype."""
        gi, (want, shape, dtype) = self._order[self._pos]
        if name != want or tuple(tensor.shape) != tuple(shape) or tensor.dtype != dtype:
            raise RuntimeError(f"writer expected {want} {shape} {dtype}, got {name} "
                               f"{tuple(tensor.shape)} {tensor.dtype}")
        if gi != self._shard:
            self._open(gi)
        t = tensor.detach().to("cpu").contiguous()
        if t.numel():
            self._fh.write(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
        self._pos += 1

    def close(self) -> None:
        """Finish the last shard and write the index (only for several shards)."""
        if self._pos != len(self._order):
            raise RuntimeError(f"writer closed after {self._pos} of {len(self._order)} tensors")
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if len(self.files) > 1:
            weight_map = {name: self.files[gi] for gi, (name, _, _) in self._order}
            index = {"metadata": {"total_size": self.total_size}, "weight_map": weight_map}
            (self.folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))

    def abort(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def write_checkpoint(out: str | Path, layout: Sequence[tuple[str, tuple[int, ...], torch.dtype]],
                     tensors: Iterable[tuple[str, torch.Tensor]], *, config: dict | None, config_from: Path,
                     tokenizer_from: Path, files: dict[str, str], force: bool = False,
                     max_shard_bytes: int = DEFAULT_SHARD_BYTES) -> Path:
    """A complete HF checkpoint in `out`, atomically: `tensors` streamed into shards in
    `layout` order, `config` as config.json, the generation config of `config_from`, the
    tokenizer of `tokenizer_from`, and `files` (name -> text)."""
    out = Path(out)
    with atomic_output_dir(out, force) as tmp:
        writer = ShardedWriter(tmp, layout, max_shard_bytes)
        try:
            with torch.inference_mode():
                for name, t in tensors:
                    writer.write(name, t)
            writer.close()
        finally:
            writer.abort()
        if config is not None:
            (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        copy_side_files(config_from, tokenizer_from, tmp)
        for name, text in files.items():
            (tmp / name).write_text(text)
    return out

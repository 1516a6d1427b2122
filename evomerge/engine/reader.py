"""Lazy, shard-aware checkpoint reader: tensor names, shapes and dtypes come from the
safetensors headers (a few KB read per shard); a tensor's bytes are read only when asked for."""

from __future__ import annotations

import json
import mmap
import struct
from pathlib import Path

import torch

from evomerge.errors import CheckpointError

ST_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool,
}
PICKLE_NAMES = ("pytorch_model.bin", "pytorch_model.bin.index.json", "model.bin")


def read_header(path: Path) -> tuple[dict, int]:
    """The JSON header of a .safetensors file and where its data starts (no tensor data read)."""
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if n > 100_000_000:
                raise ValueError("header too large")
            header = json.loads(f.read(n))
    except (OSError, ValueError, struct.error) as err:
        raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from None
    header.pop("__metadata__", None)
    return header, 8 + n


class CheckpointReader:
    """A model directory (or one .safetensors file) read lazily, tensor by tensor.

    `get` reads a tensor with plain file reads into a fresh tensor (streaming merges: the
    process holds only the tensors in use); `map` views it in place in the file's pages
    (resident sources: shared by every process on the node).

    Pickled `.bin` checkpoints are refused unless `allow_pickle=True`; then they are loaded
    with `torch.load(weights_only=True)` (memory-mapped), never with full unpickling.
    """

    def __init__(self, path: str | Path, allow_pickle: bool = False) -> None:
        self.path = Path(path)
        self._where: dict[str, tuple[Path, int, int]] = {}
        self._meta: dict[str, tuple[tuple[int, ...], torch.dtype]] = {}
        self._handles: dict[Path, object] = {}  # open shard files
        self._maps: dict[Path, mmap.mmap] = {}  # shards mapped by map()
        self._pickled: dict[str, torch.Tensor] | None = None
        if not self.path.exists():
            raise CheckpointError(f"{self.path}: no such model directory or file")
        shards = self._find_shards()
        if shards is None:
            self._load_pickled(allow_pickle)
            return
        for shard in shards:
            header, start = read_header(shard)
            size = shard.stat().st_size
            for name, info in header.items():
                dtype = ST_DTYPES.get(info.get("dtype"))
                if dtype is None:
                    raise CheckpointError(f"{shard}: tensor {name} has unsupported dtype {info.get('dtype')}")
                shape = tuple(info["shape"])
                a, b = info["data_offsets"]
                nbytes = torch.Size(shape).numel() * torch.empty((), dtype=dtype).element_size()
                if b - a != nbytes or start + b > size:
                    raise CheckpointError(f"{shard}: tensor {name} has inconsistent offsets (truncated file?)")
                self._where[name] = (shard, start + a, nbytes)
                self._meta[name] = (shape, dtype)

    def _find_shards(self) -> list[Path] | None:
        p = self.path
        if p.is_file():
            if p.suffix == ".safetensors":
                return [p]
            return None
        index = p / "model.safetensors.index.json"
        if index.exists():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
            except (OSError, ValueError, KeyError) as err:
                raise CheckpointError(f"{index}: malformed index ({err})") from None
            shards = sorted({p / f for f in weight_map.values()})
            for s in shards:
                if not s.exists():
                    raise CheckpointError(f"{s}: shard named in {index.name} is missing")
            return shards
        single = p / "model.safetensors"
        if single.exists():
            return [single]
        found = sorted(p.glob("*.safetensors"))
        if found:
            return found
        if any((p / n).exists() for n in PICKLE_NAMES) or list(p.glob("*.bin")):
            return None
        raise CheckpointError(f"{p}: no safetensors weights found")

    def _load_pickled(self, allow: bool) -> None:
        p = self.path
        files = [p] if p.is_file() else sorted(p.glob("*.bin"))
        if not allow:
            raise CheckpointError(f"{files[0]}: pickled checkpoint refused (convert to safetensors, "
                                  "or allow pickles explicitly; they are then loaded weights-only)")
        state: dict[str, torch.Tensor] = {}
        for f in files:
            try:
                state.update(torch.load(f, map_location="cpu", weights_only=True, mmap=True))
            except Exception as err:  # noqa: BLE001 - any unpickling failure is the file's fault
                raise CheckpointError(f"{f}: cannot load weights-only ({type(err).__name__}: {err})") from None
        self._pickled = state
        for name, t in state.items():
            self._meta[name] = (tuple(t.shape), t.dtype)

    @property
    def names(self) -> list[str]:
        return list(self._meta)

    def __contains__(self, name: str) -> bool:
        return name in self._meta

    def shape(self, name: str) -> tuple[int, ...]:
        return self._meta[name][0]

    def dtype(self, name: str) -> torch.dtype:
        return self._meta[name][1]

    def get(self, name: str) -> torch.Tensor:
        """The tensor (a fresh CPU tensor the caller owns)."""
        if self._pickled is not None:
            return self._pickled[name]
        shard, offset, nbytes = self._where[name]
        shape, dtype = self._meta[name]
        t = torch.empty(shape, dtype=dtype)
        if nbytes:
            f = self._handles.get(shard)
            if f is None:
                f = self._handles[shard] = open(shard, "rb")  # noqa: SIM115 - closed in close()
            f.seek(offset)
            if f.readinto(memoryview(t.reshape(-1).view(torch.uint8).numpy())) != nbytes:
                raise CheckpointError(f"{shard}: tensor {name} is truncated")
        return t

    def map(self, name: str) -> torch.Tensor:
        """The tensor as a view of its shard's file pages (copy-on-write private mapping).

        Nothing is read until touched, and the pages are the page cache's: every process on
        the node that maps the same file shares one copy of them (resident sources of several
        workers), and under memory pressure the kernel drops and rereads them instead of
        swapping. Writing to the tensor copies the touched pages (never the file)."""
        if self._pickled is not None:
            return self._pickled[name]
        shard, offset, nbytes = self._where[name]
        shape, dtype = self._meta[name]
        if not nbytes:
            return torch.empty(shape, dtype=dtype)
        m = self._maps.get(shard)
        if m is None:
            with open(shard, "rb") as f:
                m = self._maps[shard] = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
        count = nbytes // torch.empty((), dtype=dtype).element_size()
        return torch.frombuffer(m, dtype=dtype, count=count, offset=offset).view(shape)

    @property
    def folder(self) -> Path:
        """The model directory (config, tokenizer files)."""
        return self.path if self.path.is_dir() else self.path.parent

    def config(self) -> dict:
        """config.json as a dict ({} when absent)."""
        f = self.folder / "config.json"
        if not f.exists():
            return {}
        try:
            return json.loads(f.read_text())
        except ValueError as err:
            raise CheckpointError(f"{f}: malformed JSON ({err})") from None

    def close(self) -> None:
        for f in self._handles.values():
            f.close()
        self._handles.clear()

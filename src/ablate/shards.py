"""Token shards on disk: the formats researchers already have, read memory-mapped, never loaded whole.

Two formats, told apart by the file's first bytes, never by its name:

- **llm.c / modded-nanogpt** (FineWeb shards): a header of 256 little-endian int32s (magic number, version,
  token count, the rest zero), then the tokens. Magic 20240520 with version 1 holds uint16 tokens (GPT-2);
  magic 20240801 with version 7 holds uint32 tokens (llm.c's LLaMA-3 shards).
- **nanoGPT** ``train.bin`` / ``val.bin``: raw uint16 tokens, no header.

A raw uint16 file cannot be mistaken for an llm.c shard by a GPT-2 vocabulary: the magic number's low half,
20240520 & 0xFFFF = 54984, is not a GPT-2 token id (< 50257).

ablate's own token cache is written in the llm.c format, so every token file it reads is a shard.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from ablate.errors import DataError

HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
# (magic, version) -> token dtype, as llm.c's dev/data/data_common.py writes them
LLMC_FORMATS = {(20240520, 1): np.dtype(np.uint16), (20240801, 7): np.dtype(np.uint32)}
LLMC_MAGICS = {magic for magic, _ in LLMC_FORMATS}
# a prefix of this many tokens of each shard is checked against the vocabulary when it is opened
CHECK_PREFIX = 1 << 20


def shard_format(path: Path) -> tuple[str, np.dtype, int, int]:
    """``(format, dtype, offset, n_tokens)`` of a token file, read from its header (or its absence)."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = np.frombuffer(f.read(HEADER_BYTES), dtype="<i4") if size >= HEADER_BYTES else None
    if head is not None and int(head[0]) in LLMC_MAGICS:
        magic, version, count = (int(v) for v in head[:3])
        dtype = LLMC_FORMATS.get((magic, version))
        if dtype is None:
            known = ", ".join(f"magic {m} version {v}" for m, v in LLMC_FORMATS)
            raise DataError(f"shard {path}: llm.c header with magic {magic} and version {version}; known: {known}")
        expected = HEADER_BYTES + count * dtype.itemsize
        if count < 0 or size != expected:
            raise DataError(
                f"shard {path}: its header says {count} {dtype.name} tokens ({expected} bytes with the header), "
                f"but the file has {size} bytes; it is truncated or not an llm.c shard"
            )
        return "llmc", dtype, HEADER_BYTES, count
    if size % 2:
        raise DataError(
            f"shard {path}: {size} bytes is not a whole number of uint16 tokens and there is no llm.c header "
            f"(magic {sorted(LLMC_MAGICS)}); give nanoGPT's raw uint16 .bin or llm.c shards"
        )
    return "nanogpt", np.dtype(np.uint16), 0, size // 2


def open_shard(path: str | os.PathLike) -> np.ndarray:
    """The tokens of one shard, memory-mapped read-only (an empty shard is an empty array)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"shard {path}: no such file")
    _, dtype, offset, count = shard_format(path)
    if count == 0:
        return np.zeros(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=(count,))


def find_shards(spec: str | os.PathLike, key: str = "data.path") -> list[Path]:
    """The shard files ``spec`` names: one file, a directory (its ``*.bin`` files, sorted), or a glob."""
    text = os.path.expanduser(str(spec))
    path = Path(text)
    if glob.has_magic(text):
        found = sorted(Path(p) for p in glob.glob(text) if Path(p).is_file())
        if not found:
            raise DataError(f"{key}={spec}: no shard matches this pattern")
        return found
    if path.is_dir():
        found = sorted(p for p in path.glob("*.bin") if p.is_file())
        if not found:
            raise DataError(f"{key}={spec} is a folder with no shards (*.bin files); give a shard, a folder or a glob")
        return found
    if not path.exists():
        raise DataError(f"{key}={spec}: no such shard, folder or pattern")
    return [path]


def check_vocab(tokens: np.ndarray, vocab_size: int, where: str, limit: int | None = CHECK_PREFIX) -> None:
    """Fail in one line if a token id is outside the model's vocabulary (checking the first ``limit`` tokens)."""
    part = tokens[:limit] if limit else tokens
    if len(part) and int(part.max()) >= vocab_size:
        i = int(np.argmax(part >= vocab_size))
        raise DataError(
            f"{where}: token id {int(part[i])} at position {i} is not in the vocabulary of {vocab_size} "
            f"(data.tokenizer); the shard holds another tokenizer's ids or another dtype"
        )


class Tokens:
    """Several shards as one sequence of tokens, without copying: ``len``, slices (views) and integer-array
    indexing (a batch of windows), as a numpy array offers them. A window may span two shards."""

    def __init__(self, parts: Sequence[np.ndarray], start: int = 0, stop: int | None = None) -> None:
        self.parts = list(parts)
        self.ends = np.cumsum([len(p) for p in self.parts], dtype=np.int64)  # where each part ends
        self.start = start
        self.stop = int(self.ends[-1]) if stop is None else stop
        self.dtype = np.result_type(*(p.dtype for p in self.parts))

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, index: slice | np.ndarray) -> Tokens | np.ndarray:
        if isinstance(index, slice):
            a, b, step = index.indices(len(self))
            if step != 1:
                raise IndexError("Tokens supports contiguous slices only")
            return Tokens(self.parts, self.start + a, self.start + max(a, b))
        index = np.asarray(index, dtype=np.int64)
        if index.size and (index.min() < 0 or index.max() >= len(self)):
            raise IndexError(f"token index out of range [0, {len(self)})")
        flat = index.ravel() + self.start
        which = np.searchsorted(self.ends, flat, side="right")  # (N,) the part each position is in
        local = flat - np.concatenate([[0], self.ends[:-1]])[which]
        out = np.empty(flat.shape, dtype=self.dtype)
        for part in np.unique(which):
            sel = which == part
            out[sel] = self.parts[part][local[sel]]
        return out.reshape(index.shape)

    def to_array(self) -> np.ndarray:
        """The tokens as one array (copies; for windows, small data and tests)."""
        return self[np.arange(len(self))]

    def __array__(self, dtype: np.dtype | None = None, copy: bool | None = None) -> np.ndarray:
        return self.to_array() if dtype is None else self.to_array().astype(dtype)


def open_tokens(paths: Iterable[Path]) -> np.ndarray | Tokens:
    """One shard's memmap as it is (the fast path), or several as ``Tokens``; empty shards are left out."""
    parts = [t for t in (open_shard(p) for p in paths) if len(t)]
    if not parts:
        return np.zeros(0, dtype=np.uint16)
    return parts[0] if len(parts) == 1 else Tokens(parts)


def write_shard(path: str | os.PathLike, tokens: np.ndarray, version: int = 1) -> None:
    """Write tokens as one llm.c shard (for tests and small data; large data goes through ``ShardWriter``)."""
    with ShardWriter(path, np.uint16 if version == 1 else np.uint32) as w:
        w.write(np.asarray(tokens))


class ShardWriter:
    """Append tokens to an llm.c shard: a header whose token count is filled in on close, written to a
    temporary file that is renamed into place, so a reader never sees a half-written shard."""

    def __init__(self, path: str | os.PathLike, dtype: type | np.dtype = np.uint16) -> None:
        self.path, self.dtype = Path(path), np.dtype(dtype)
        self.magic, self.version = next(k for k, v in LLMC_FORMATS.items() if v == self.dtype)
        self.count = 0

    def __enter__(self) -> ShardWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        self.file = self.tmp.open("wb")
        self.file.write(bytes(HEADER_BYTES))
        return self

    def write(self, tokens: np.ndarray) -> None:
        if len(tokens) and int(tokens.max()) > np.iinfo(self.dtype).max:
            raise DataError(f"token id {int(tokens.max())} does not fit a {self.dtype.name} shard")
        self.file.write(np.ascontiguousarray(tokens, dtype=self.dtype).tobytes())
        self.count += len(tokens)

    def __exit__(self, exc_type: object, *_: object) -> None:
        try:
            if exc_type is None:
                header = np.zeros(HEADER_INTS, dtype="<i4")
                header[:3] = (self.magic, self.version, self.count)
                self.file.seek(0)
                self.file.write(header.tobytes())
                self.file.flush()
                os.fsync(self.file.fileno())
        finally:
            self.file.close()
        if exc_type is None:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)

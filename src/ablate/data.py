"""Text data: tokenized once into a cached token file, read back memory-mapped, served as windows.

Every batch is a ``(B, T + 1)`` tensor of token windows; the model reads ``[:, :-1]`` and predicts
``[:, 1:]``. Training batches are random windows whose RNG is seeded by ``(seed, step)``, so the
data order is a function of the step alone (a resumed run sees exactly the batches it would have
seen). Validation batches are fixed windows, the same at every evaluation and in every run.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from ablate.errors import DataError
from ablate.io import atomic_write_bytes, atomic_write_json
from ablate.tokenizers import TOKENIZERS, CharTokenizer, GPT2Tokenizer, Tokenizer, tokenizer_from_state

EVAL_SEED = 20240101  # fixed, independent of the run's seed: every run is evaluated on the same windows


def default_text_path() -> Path:
    """The tiny Shakespeare corpus shipped inside the package."""
    return Path(str(files("ablate.assets") / "tinyshakespeare.txt"))


def default_cache_dir() -> Path:
    if os.environ.get("ABLATE_CACHE_DIR"):
        return Path(os.environ["ABLATE_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ablate"


def read_text(path: Path) -> str:
    """Read a UTF-8 text file, or fail with one line that says what is wrong with it."""
    if not path.exists():
        raise DataError(f"data.path={path}: no such file; give a UTF-8 text file (null: tiny Shakespeare)")
    if not path.is_file():
        raise DataError(f"data.path={path} is not a file; give a UTF-8 text file (null: tiny Shakespeare)")
    raw = path.read_bytes()
    if not raw:
        raise DataError(f"data.path={path} is empty; give a UTF-8 text file with at least one block of text")
    nul = raw.find(b"\0", 0, 65536)
    if nul >= 0:
        raise DataError(f"data.path={path} looks binary (a NUL byte at offset {nul}); give a UTF-8 text file")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(
            f"data.path={path} is not UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start}); "
            f"convert it, e.g. iconv -f latin1 -t utf-8"
        ) from None


def tokenize_cached(path: Path, kind: str, cache_dir: Path) -> tuple[np.ndarray, Tokenizer]:
    """Tokens of ``path`` (memory-mapped) and its tokenizer, tokenizing only if the cache has no copy."""
    if kind not in TOKENIZERS:
        raise DataError(f"data.tokenizer={kind!r} is unknown; choose one of: {', '.join(TOKENIZERS)}")
    path = path.resolve()
    stat = path.stat() if path.is_file() else None
    key = hashlib.sha256(f"{path}|{stat and stat.st_size}|{stat and stat.st_mtime_ns}|{kind}".encode()).hexdigest()
    bin_path, meta_path = cache_dir / f"{key[:20]}.bin", cache_dir / f"{key[:20]}.json"
    if not (bin_path.exists() and meta_path.exists()):
        text = read_text(path)
        tokenizer: Tokenizer = CharTokenizer.from_text(text) if kind == "char" else GPT2Tokenizer()
        dtype = np.uint16 if tokenizer.vocab_size <= 2**16 else np.uint32
        ids = np.asarray(tokenizer.encode(text), dtype=dtype)
        atomic_write_bytes(bin_path, ids.tobytes())
        # the meta file is written last: its presence means the token file is complete
        meta = {"source": str(path), "dtype": np.dtype(dtype).name, "tokenizer": tokenizer.state()}
        atomic_write_json(meta_path, meta)
    meta = json.loads(meta_path.read_text())
    tokens = np.memmap(bin_path, dtype=meta["dtype"], mode="r")
    return tokens, tokenizer_from_state(meta["tokenizer"])


class Windows(Dataset):
    """Windows of ``block_size + 1`` tokens starting at the given offsets."""

    def __init__(self, tokens: np.ndarray, starts: np.ndarray, block_size: int) -> None:
        self.tokens, self.starts, self.span = tokens, starts, block_size + 1

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> torch.Tensor:
        s = int(self.starts[i])
        return torch.from_numpy(self.tokens[s : s + self.span].astype(np.int64))


class RandomWindows(IterableDataset):
    """An endless stream of batches of random windows; batch ``s`` is drawn from an RNG seeded by ``(seed, s)``.

    The global batch is drawn whole and each rank takes its rows ``rank::world_size``, so training on
    N processes sees exactly the data of one process with the same global batch.
    """

    def __init__(
        self, tokens: np.ndarray, batch_size: int, block_size: int, seed: int,
        start_step: int = 0, rank: int = 0, world_size: int = 1,
    ) -> None:
        self.tokens, self.batch_size, self.block_size, self.seed = tokens, batch_size, block_size, seed
        self.start_step, self.rank, self.world_size = start_step, rank, world_size
        self.offsets = np.arange(block_size + 1)

    def batch(self, step: int) -> torch.Tensor:
        rng = np.random.default_rng((self.seed, step))
        starts = rng.integers(0, len(self.tokens) - self.block_size, size=self.batch_size)
        starts = starts[self.rank :: self.world_size]
        return torch.from_numpy(self.tokens[starts[:, None] + self.offsets].astype(np.int64))  # (B, T + 1)

    def __iter__(self) -> Iterator[torch.Tensor]:
        step = self.start_step
        while True:
            yield self.batch(step)
            step += 1


class TextDataModule(L.LightningDataModule):
    """A text file split 90/10 into train and validation tokens (the last tenth is validation)."""

    def __init__(
        self,
        path: str | None = None,
        tokenizer: str = "char",
        batch_size: int = 12,
        block_size: int = 64,
        val_fraction: float = 0.1,
        eval_batches: int = 20,
        cache_dir: str | None = None,
        seed: int = 1337,
    ) -> None:
        super().__init__()
        self.path = Path(path).expanduser() if path else default_text_path()
        self.kind = tokenizer
        self.batch_size, self.block_size = batch_size, block_size
        self.val_fraction, self.eval_batches, self.seed = val_fraction, eval_batches, seed
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        self.tokenizer: Tokenizer | None = None

    def prepare_data(self) -> None:
        tokenize_cached(self.path, self.kind, self.cache_dir)

    def setup(self, stage: str | None = None) -> None:
        if self.tokenizer is not None:
            return
        tokens, self.tokenizer = tokenize_cached(self.path, self.kind, self.cache_dir)
        n_val = int(len(tokens) * self.val_fraction)
        self.train_tokens, self.val_tokens = tokens[: len(tokens) - n_val], tokens[len(tokens) - n_val :]
        need = self.block_size + 1
        for split, part in (("training", self.train_tokens), ("validation", self.val_tokens)):
            if len(part) < need:
                raise DataError(
                    f"data.path={self.path} has {len(tokens)} {self.kind} tokens, so its {split} split has "
                    f"{len(part)}, fewer than block_size + 1 = {need}; use a longer text or a smaller model.block_size"
                )

    def state(self) -> dict[str, Any]:
        return {"tokens_train": len(self.train_tokens), "tokens_val": len(self.val_tokens)}

    def train_dataloader(self) -> DataLoader:
        trainer = self.trainer
        # batch s is a function of (seed, s): a resumed run continues the data order at its global step
        start_step = trainer.global_step if trainer else 0
        return DataLoader(
            RandomWindows(
                self.train_tokens, self.batch_size, self.block_size, self.seed, start_step,
                rank=trainer.global_rank if trainer else 0, world_size=trainer.world_size if trainer else 1,
            ),
            batch_size=None,
            generator=_own_generator(),
        )

    def val_dataloader(self) -> DataLoader:
        """The fixed windows evaluated during training: ``eval_batches`` batches, the same every time."""
        rng = np.random.default_rng(EVAL_SEED)
        starts = rng.integers(0, len(self.val_tokens) - self.block_size, size=self.eval_batches * self.batch_size)
        return DataLoader(
            Windows(self.val_tokens, starts, self.block_size), batch_size=self.batch_size, generator=_own_generator()
        )

    def full_val_dataloader(self) -> DataLoader:
        """The whole validation split as non-overlapping windows, for the final evaluation."""
        starts = np.arange(0, len(self.val_tokens) - self.block_size, self.block_size)
        return DataLoader(
            Windows(self.val_tokens, starts, self.block_size), batch_size=self.batch_size, generator=_own_generator()
        )


def _own_generator() -> torch.Generator:
    """Each DataLoader iteration draws a seed from its generator; by default that is the global RNG, which
    would make dropout depend on how many loaders a run has started (and break exact resume)."""
    return torch.Generator().manual_seed(0)

"""Data: text tokenized once into cached shards, or token shards already on disk; read memory-mapped, served as windows.

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

from ablate.atomic import atomic_write_json
from ablate.errors import DataError
from ablate.shards import CHECK_PREFIX, Tokens, check_vocab, find_shards, open_shard, open_tokens, shard_format
from ablate.tokenize_corpus import text_files, tokenize_files
from ablate.tokenizers import TOKENIZERS, Tokenizer, tokenizer_from_state

EVAL_SEED = 20240101  # fixed, independent of the run's seed: every run is evaluated on the same windows


def default_text_path() -> Path:
    """The tiny Shakespeare corpus shipped inside the package."""
    return Path(str(files("ablate.assets") / "tinyshakespeare.txt"))


def default_cache_dir() -> Path:
    if os.environ.get("ABLATE_CACHE_DIR"):
        return Path(os.environ["ABLATE_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ablate"


def _fingerprint(files: list[Path]) -> str:
    return "|".join(f"{p}|{p.stat().st_size}|{p.stat().st_mtime_ns}" for p in files)


def tokenize_cached(
    path: Path, kind: str, cache_dir: Path, threads: int | None = None, progress: bool = False, key: str = "data.path"
) -> tuple[np.ndarray | Tokens, Tokenizer]:
    """Tokens of ``path`` (a text file or a folder of them; memory-mapped) and its tokenizer, tokenizing
    only if the cache has no copy. Text of any size is tokenized in bounded memory, in parallel
    (``ablate.tokenize_corpus``), into llm.c shards in the cache; their meta file is written last, so its
    presence means the shards are complete."""
    if kind not in TOKENIZERS:
        raise DataError(f"data.tokenizer={kind!r} is unknown; choose one of: {', '.join(TOKENIZERS)}")
    path = path.resolve()
    files = text_files(path, key)
    name = hashlib.sha256(f"{_fingerprint(files)}|{kind}|llmc-shards".encode()).hexdigest()[:20]
    meta_path = cache_dir / f"{name}.json"
    if not meta_path.exists():
        info = tokenize_files(files, kind, cache_dir / name, threads, progress=progress, key=key)
        atomic_write_json(meta_path, {"source": str(path), **info})
    meta = json.loads(meta_path.read_text())
    return open_tokens(cache_dir / name for name in meta["shards"]), tokenizer_from_state(meta["tokenizer"])


class Windows(Dataset):
    """Windows of ``block_size + 1`` tokens starting at the given offsets."""

    def __init__(self, tokens: np.ndarray, starts: np.ndarray, block_size: int) -> None:
        self.tokens, self.starts, self.span = tokens, starts, block_size + 1

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> torch.Tensor:
        s = int(self.starts[i])
        return torch.from_numpy(np.asarray(self.tokens[s : s + self.span], dtype=np.int64))


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


class CheckedWindows(RandomWindows):
    """``RandomWindows`` that refuse a token id outside the vocabulary: shards too large to scan whole at the
    start are checked batch by batch as training reads them."""

    def __init__(self, *args: Any, vocab_size: int, where: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.vocab_size, self.where = vocab_size, where

    def batch(self, step: int) -> torch.Tensor:
        batch = super().batch(step)
        if int(batch.max()) >= self.vocab_size:
            check_vocab(batch.flatten().numpy(), self.vocab_size, f"{self.where} (training batch {step})", None)
        return batch


class TokenDataModule(L.LightningDataModule):
    """Training and validation tokens, served as windows. Subclasses say where the tokens come from (``load``):
    the training tokens and the validation tokens, or ``None`` for the last ``val_fraction`` of the training ones."""

    path: Path | str
    kind: str

    def __init__(self, batch_size: int, block_size: int, val_fraction: float, eval_batches: int, seed: int) -> None:
        super().__init__()
        self.batch_size, self.block_size = batch_size, block_size
        self.val_fraction, self.eval_batches, self.seed = val_fraction, eval_batches, seed
        self.tokenizer: Tokenizer | None = None

    def load(self) -> tuple[np.ndarray | Tokens, np.ndarray | Tokens | None, Tokenizer]:
        raise NotImplementedError

    def prepare_data(self) -> None:
        self.load()

    def setup(self, stage: str | None = None) -> None:
        if self.tokenizer is not None:
            return
        tokens, val, tokenizer = self.load()
        need = self.block_size + 1
        if val is None:
            n_val = int(len(tokens) * self.val_fraction)
            self.train_tokens, self.val_tokens = tokens[: len(tokens) - n_val], tokens[len(tokens) - n_val :]
            for split, part in (("training", self.train_tokens), ("validation", self.val_tokens)):
                if len(part) < need:
                    raise DataError(
                        f"data.path={self.path} has {len(tokens)} {self.kind} tokens, so its {split} split has "
                        f"{len(part)}, fewer than block_size + 1 = {need}; "
                        f"use a longer text or a smaller model.block_size"
                    )
        else:
            self.train_tokens, self.val_tokens = tokens, val
            for key, part in (("path", tokens), ("val_path", val)):
                if len(part) < need:
                    raise DataError(
                        f"data.{key}={getattr(self, key)} has {len(part)} {self.kind} tokens, fewer than "
                        f"block_size + 1 = {need}; give more data or a smaller model.block_size"
                    )
        self.tokenizer = tokenizer

    def state(self) -> dict[str, Any]:
        return {"tokens_train": len(self.train_tokens), "tokens_val": len(self.val_tokens)}

    def windows(self, start_step: int, rank: int, world_size: int) -> RandomWindows:
        return RandomWindows(
            self.train_tokens, self.batch_size, self.block_size, self.seed, start_step, rank=rank, world_size=world_size
        )

    def train_dataloader(self) -> DataLoader:
        trainer = self.trainer
        # batch s is a function of (seed, s): a resumed run continues the data order at its global step
        start_step = trainer.global_step if trainer else 0
        return DataLoader(
            self.windows(start_step, trainer.global_rank if trainer else 0, trainer.world_size if trainer else 1),
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


class TextDataModule(TokenDataModule):
    """Text (a file or a folder of files), tokenized once into the cache; validation is ``val_path`` or the
    last ``val_fraction`` of the tokens."""

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
        val_path: str | None = None,
        threads: int | None = None,
    ) -> None:
        super().__init__(batch_size, block_size, val_fraction, eval_batches, seed)
        self.path = Path(path).expanduser() if path else default_text_path()
        self.val_path = Path(val_path).expanduser() if val_path else None
        self.kind, self.threads = tokenizer, threads
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()

    def load(self) -> tuple[np.ndarray | Tokens, np.ndarray | Tokens | None, Tokenizer]:
        tokens, tokenizer = tokenize_cached(self.path, self.kind, self.cache_dir, self.threads, progress=True)
        if self.val_path is None:
            return tokens, None, tokenizer
        if self.kind == "char":
            raise DataError("data.val_path needs data.tokenizer=gpt2 (a char vocabulary is the training text's own)")
        val, _ = tokenize_cached(self.val_path, self.kind, self.cache_dir, self.threads, True, "data.val_path")
        return tokens, val, tokenizer


class ShardDataModule(TokenDataModule):
    """Token shards already on disk (nanoGPT's ``train.bin``, llm.c / modded-nanogpt FineWeb shards), memory-mapped:
    ``path`` and ``val_path`` are each a file, a folder of ``*.bin`` shards, or a glob. Token ids are checked
    against the tokenizer's vocabulary: a prefix of every training shard at the start, every training batch as
    it is drawn, and the whole validation set."""

    def __init__(
        self,
        path: str,
        val_path: str | None = None,
        tokenizer: str = "gpt2",
        batch_size: int = 12,
        block_size: int = 64,
        val_fraction: float = 0.1,
        eval_batches: int = 20,
        seed: int = 1337,
    ) -> None:
        super().__init__(batch_size, block_size, val_fraction, eval_batches, seed)
        if tokenizer != "gpt2":
            raise DataError(f"data.tokenizer={tokenizer!r}: token shards hold GPT-2 BPE ids; use data.tokenizer=gpt2")
        if not path:
            raise DataError("data.path is not set; give a shard, a folder of shards or a glob: data.path=...")
        self.path, self.val_path, self.kind = str(path), str(val_path) if val_path else None, tokenizer
        self.formats: dict[str, str] = {}

    def _open(self, spec: str, key: str, vocab_size: int, whole: bool) -> np.ndarray | Tokens:
        paths = find_shards(spec, key)
        for p in paths:
            check_vocab(open_shard(p), vocab_size, f"shard {p}", None if whole else CHECK_PREFIX)
            self.formats[str(p)] = shard_format(p)[0]
        return open_tokens(paths)

    def load(self) -> tuple[np.ndarray | Tokens, np.ndarray | Tokens | None, Tokenizer]:
        tokenizer = tokenizer_from_state({"kind": self.kind})
        tokens = self._open(self.path, "data.path", tokenizer.vocab_size, whole=False)
        val = self._open(self.val_path, "data.val_path", tokenizer.vocab_size, whole=True) if self.val_path else None
        if val is None:  # validation is the tail of the training shards: check it whole, as a separate set would be
            n_val = int(len(tokens) * self.val_fraction)
            tail = tokens[len(tokens) - n_val :]
            tail = tail.to_array() if isinstance(tail, Tokens) else tail
            check_vocab(tail, tokenizer.vocab_size, f"the validation tail of data.path={self.path}", None)
        return tokens, val, tokenizer

    def windows(self, start_step: int, rank: int, world_size: int) -> RandomWindows:
        return CheckedWindows(
            self.train_tokens, self.batch_size, self.block_size, self.seed, start_step, rank=rank,
            world_size=world_size, vocab_size=self.tokenizer.vocab_size, where=f"data.path={self.path}",
        )

    def state(self) -> dict[str, Any]:
        return {**super().state(), "shards": len(self.formats), "formats": sorted(set(self.formats.values()))}


def make_datamodule(data: dict[str, Any], seed: int) -> TokenDataModule:
    """The datamodule a ``data`` config node describes: its ``_target_`` (``conf/data/*.yaml``), or, without one,
    a ``TextDataModule`` (``data=shakespeare``)."""
    from hydra.utils import get_class

    data = dict(data)
    target = data.pop("_target_", None)
    missing = [key for key, value in data.items() if value == "???"]
    if missing:
        raise DataError(f"data.{missing[0]} is required by this data config; set it: data.{missing[0]}=...")
    cls = get_class(target) if target else TextDataModule
    try:
        return cls(**data, seed=seed)
    except TypeError as e:
        raise DataError(f"data: {e} (data._target_={target or 'ablate.data.TextDataModule'})") from None


def _own_generator() -> torch.Generator:
    """Each DataLoader iteration draws a seed from its generator; by default that is the global RNG, which
    would make dropout depend on how many loaders a run has started (and break exact resume)."""
    return torch.Generator().manual_seed(0)

"""Tokenize text far larger than memory: read in blocks, cut where tokenization cannot change, encode the
pieces in parallel (tiktoken's ``encode_ordinary_batch``), append the tokens to llm.c shards.

The result equals tokenizing the whole text in one piece. GPT-2's pre-tokenizer splits text with a regex
before BPE merges anything, and BPE never merges across those splits, so a cut that is a split of the regex
on the whole text changes nothing. Two kinds of cut are (``cut_point``):

- right after a ``\\n`` that has a printable ASCII character on each side (``a\\nB``): the newline is a
  piece of its own either way. (After ``a \\n`` it is not: a trailing ``" \\n"`` would be one whitespace
  piece at the end of a block but ``" "`` and ``"\\n"`` in the whole text.)
- before a space that follows a printable ASCII character and precedes an ASCII letter (``a| b``): the
  regex's `` ?\\p{L}+`` takes `` b...`` either way; used only in a block with no such newline.

Usage: ``python -m ablate.tokenize_corpus corpus.txt out/corpus --threads 8`` writes out/corpus_000000.bin, ...
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ablate.errors import DataError
from ablate.shards import ShardWriter
from ablate.tokenizers import TOKENIZERS, CharTokenizer, GPT2Tokenizer, gpt2_encoding

EOT = 50256  # GPT-2's <|endoftext|>, written between the files of a folder
MAX_SHARD_TOKENS = 2**31 - 1  # an llm.c header counts tokens in an int32
PROGRESS_BYTES = 32 << 20  # smaller text takes a few seconds at most: no progress bar
_GRAPH = bytes(range(0x21, 0x7F))  # printable ASCII, never whitespace
_LETTER = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def cut_point(buf: bytes) -> int:
    """The last offset in ``buf`` where a cut leaves GPT-2 tokenization unchanged, or 0 if there is none."""
    i = buf.rfind(b"\n", 0, len(buf) - 1)
    while i > 0:
        if buf[i - 1] in _GRAPH and buf[i + 1] in _GRAPH:
            return i + 1
        i = buf.rfind(b"\n", 0, i)
    i = buf.rfind(b" ", 0, len(buf) - 1)
    while i > 0:
        if buf[i - 1] in _GRAPH and buf[i + 1] in _LETTER:
            return i
        i = buf.rfind(b" ", 0, i)
    return 0


def text_files(path: Path, key: str = "data.path") -> list[Path]:
    """A text file, or a folder's files (recursively, sorted, hidden ones left out)."""
    if not path.exists():
        raise DataError(f"{key}={path}: no such file; give a UTF-8 text file or a folder of them")
    if path.is_file():
        return [path]
    hidden = lambda p: any(part.startswith(".") for part in p.relative_to(path).parts)  # noqa: E731
    files = sorted(p for p in path.rglob("*") if p.is_file() and not hidden(p))
    if not files:
        raise DataError(f"{key}={path} is a folder with no files; give a UTF-8 text file or a folder of them")
    return files


def _check_start(path: Path, f: BinaryIO, key: str) -> None:
    head = f.read(65536)
    f.seek(0)
    if not head:
        raise DataError(f"{key}={path} is empty; give a UTF-8 text file with at least one block of text")
    nul = head.find(b"\0")
    if nul >= 0:
        raise DataError(f"{key}={path} looks binary (a NUL byte at offset {nul}); give a UTF-8 text file")


def pieces(path: Path, block_bytes: int = 1 << 20, key: str = "data.path") -> Iterator[tuple[str, int]]:
    """The text of ``path`` as ``(piece, bytes)``: pieces of about ``block_bytes`` (longer only where a block
    has no cut point), decoded, whose tokens concatenate to the tokens of the whole text."""
    with path.open("rb") as f:
        _check_start(path, f, key)
        buf, offset = b"", 0  # offset: where buf starts in the file
        while True:
            data = f.read(block_bytes)
            if not data:
                if buf:
                    yield _decode(buf, path, offset, key), len(buf)
                return
            buf += data
            cut = cut_point(buf)
            if cut:  # else no safe cut yet: read on
                yield _decode(buf[:cut], path, offset, key), cut
                buf, offset = buf[cut:], offset + cut


def _decode(raw: bytes, path: Path, offset: int, key: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(
            f"{key}={path} is not UTF-8 (byte 0x{raw[e.start]:02x} at offset {offset + e.start}); "
            f"convert it, e.g. iconv -f latin1 -t utf-8"
        ) from None


class _Shards:
    """Tokens appended to ``prefix_000000.bin``, ``prefix_000001.bin``, ... of at most ``limit`` tokens each."""

    def __init__(self, prefix: Path, dtype: type, limit: int) -> None:
        self.prefix, self.dtype, self.limit = prefix, dtype, limit
        self.paths: list[Path] = []
        self.writer: ShardWriter | None = None
        self.count = 0

    def write(self, tokens: np.ndarray) -> None:
        while len(tokens):
            if self.writer is None or self.writer.count >= self.limit:
                self.close()
                self.paths.append(self.prefix.with_name(f"{self.prefix.name}_{len(self.paths):06d}.bin"))
                self.writer = ShardWriter(self.paths[-1], self.dtype).__enter__()
            take = tokens[: self.limit - self.writer.count]
            self.writer.write(take)
            self.count += len(take)
            tokens = tokens[len(take) :]

    def close(self, error: BaseException | None = None) -> None:
        if self.writer is not None:
            self.writer.__exit__(type(error) if error else None, None, None)
            self.writer = None


class _Progress:
    """A progress bar in bytes with speed and time left (rich), or nothing."""

    def __init__(self, total: int, show: bool, what: str) -> None:
        self.bar = None
        if show and total >= PROGRESS_BYTES:
            from rich.console import Console
            from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

            self.bar = Progress(
                f"[bold]{what}", BarColumn(), DownloadColumn(), TransferSpeedColumn(), "ETA", TimeRemainingColumn(),
                console=Console(stderr=True),
            )
            self.bar.start()
            self.task = self.bar.add_task(what, total=total)

    def advance(self, n: int) -> None:
        if self.bar:
            self.bar.advance(self.task, n)

    def close(self) -> None:
        if self.bar:
            self.bar.stop()


def char_vocabulary(files: Sequence[Path], block_bytes: int, key: str) -> CharTokenizer:
    """A character vocabulary from a first pass over the text, one block at a time."""
    chars: set[str] = set()
    for path in files:
        for text, _ in pieces(path, block_bytes, key):
            chars.update(text)
    return CharTokenizer("".join(sorted(chars)))


def char_ids(text: str, codepoints: np.ndarray) -> np.ndarray:
    """Character ids of ``text`` given the vocabulary's sorted code points (as ``CharTokenizer.encode``)."""
    cps = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    return np.searchsorted(codepoints, cps).astype(np.uint32)


def tokenize_files(
    files: Sequence[Path],
    kind: str,
    prefix: Path,
    threads: int | None = None,
    block_bytes: int = 1 << 20,
    progress: bool = False,
    max_shard_tokens: int = MAX_SHARD_TOKENS,
    key: str = "data.path",
) -> dict[str, Any]:
    """Tokenize ``files`` (in order; GPT-2's ``<|endoftext|>`` between the files of a folder) into llm.c shards
    ``prefix_NNNNNN.bin``; returns what was written: shards, tokens, tokenizer state, bytes, seconds."""
    if kind not in TOKENIZERS:
        raise DataError(f"data.tokenizer={kind!r} is unknown; choose one of: {', '.join(TOKENIZERS)}")
    threads = threads or os.cpu_count() or 1
    total = sum(p.stat().st_size for p in files)
    t0 = time.perf_counter()
    if kind == "char":
        tokenizer: Any = char_vocabulary(files, block_bytes, key)
        codepoints = np.array([ord(c) for c in tokenizer.chars], dtype=np.uint32)
    else:
        tokenizer, encoding = GPT2Tokenizer(), gpt2_encoding()
    dtype = np.uint16 if tokenizer.vocab_size <= 2**16 else np.uint32
    out = _Shards(prefix, dtype, max_shard_tokens)
    bar = _Progress(total, progress, f"tokenizing {files[0] if len(files) == 1 else files[0].parent}")
    batch_size = 2 * threads  # pieces per encode_ordinary_batch call; two batches are in memory at once

    def encode(batch: list[tuple[str | None, int]]) -> list[np.ndarray]:
        texts = [text for text, _ in batch if text is not None]  # None: the end of a document
        if kind == "char":
            encoded = iter([char_ids(text, codepoints) for text in texts])
        else:
            lists = encoding.encode_ordinary_batch(texts, num_threads=threads)
            encoded = iter([np.asarray(ids, dtype=dtype) for ids in lists])
        return [next(encoded) if text is not None else np.array([EOT], dtype=dtype) for text, _ in batch]

    def drain(job: Future | None, batch: list[tuple[str | None, int]]) -> None:
        if job is not None:
            for ids in job.result():
                out.write(ids)
            bar.advance(sum(n for _, n in batch))

    error: BaseException | None = None
    try:
        with ThreadPoolExecutor(1) as pool:  # encodes one batch while the next is read
            job: Future | None = None
            pending: list[tuple[str | None, int]] = []
            batch: list[tuple[str | None, int]] = []
            for i, path in enumerate(files):
                for piece in pieces(path, block_bytes, key):
                    batch.append(piece)
                    if len(batch) == batch_size:
                        drain(job, pending)
                        job, pending, batch = pool.submit(encode, batch), batch, []
                if kind == "gpt2" and len(files) > 1 and i < len(files) - 1:
                    batch.append((None, 0))  # <|endoftext|> between documents
            drain(job, pending)
            if batch:
                drain(pool.submit(encode, batch), batch)
    except BaseException as e:
        error = e
        raise
    finally:
        out.close(error)
        bar.close()
    seconds = time.perf_counter() - t0
    return {
        "shards": [p.name for p in out.paths], "tokens": out.count, "dtype": np.dtype(dtype).name,
        "tokenizer": tokenizer.state(), "bytes": total, "seconds": seconds, "threads": threads,
    }


def main(argv: Sequence[str] | None = None) -> None:
    from ablate.errors import AblateError, ArgumentParser

    p = ArgumentParser(prog="python -m ablate.tokenize_corpus", description=__doc__.split("\n\n")[0])
    p.add_argument("source", type=Path, help="a UTF-8 text file or a folder of them")
    p.add_argument("prefix", type=Path, help="output shards are PREFIX_000000.bin, ...")
    p.add_argument("--tokenizer", default="gpt2", choices=TOKENIZERS)
    p.add_argument("--threads", type=int, help="encoding threads (default: all cores)")
    p.add_argument("--block-mb", type=float, default=1.0, help="text per piece, MB")
    args = p.parse_args(argv)
    try:
        files = text_files(args.source, "source")
        info = tokenize_files(
            files, args.tokenizer, args.prefix, args.threads, int(args.block_mb * 2**20), progress=True, key="source"
        )
    except AblateError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    mb = info["bytes"] / 1e6
    print(f"{info['tokens']} tokens from {mb:.1f} MB in {info['seconds']:.1f} s ({mb / info['seconds']:.1f} MB/s) "
          f"-> {', '.join(info['shards'])}")


if __name__ == "__main__":
    main()

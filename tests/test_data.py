"""Data: offline GPT-2 BPE, the character vocabulary, the token cache, the split and the batches."""

import numpy as np
import pytest
import torch

from ablate.data import RandomWindows, TextDataModule, default_text_path, tokenize_cached
from ablate.errors import DataError
from ablate.tokenizers import CharTokenizer, gpt2_encoding


def test_gpt2_bpe_works_offline_from_the_shipped_ranks():
    enc = gpt2_encoding()
    assert enc.encode("Hello world") == [15496, 995]
    assert enc.n_vocab == 50257
    assert enc.encode("<|endoftext|>", allowed_special="all") == [50256]
    text = "First Citizen:\nBefore we proceed any further, hear me speak."
    assert enc.decode(enc.encode(text)) == text


def test_char_vocabulary_of_tiny_shakespeare(tmp_path):
    tokens, tok = tokenize_cached(default_text_path(), "char", tmp_path)
    assert tok.vocab_size == 65
    assert len(tokens) == 1115394  # one token per character (the file is ASCII)
    text = default_text_path().read_text()
    assert tok.decode(tokens[:200].tolist()) == text[:200]


def test_tokenizes_once_then_reads_the_cache(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("hello world, " * 50)
    tokenize_cached(path, "char", tmp_path / "cache")
    (bin_file,) = (tmp_path / "cache").glob("*.bin")
    before = bin_file.stat().st_mtime_ns
    tokens, tok = tokenize_cached(path, "char", tmp_path / "cache")
    assert bin_file.stat().st_mtime_ns == before
    assert isinstance(tokens, np.memmap)
    assert tok.decode(tokens[:13].tolist()) == "hello world, "
    # a changed file is tokenized anew
    path.write_text("other text " * 50)
    tokens, tok = tokenize_cached(path, "char", tmp_path / "cache")
    assert tok.decode(tokens[:11].tolist()) == "other text "


def test_gpt2_tokenization_of_a_file(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("Hello world" * 3)
    tokens, tok = tokenize_cached(path, "gpt2", tmp_path)
    assert tok.vocab_size == 50257
    assert tokens.tolist() == gpt2_encoding().encode("Hello world" * 3)


def _datamodule(tmp_path, **kw):
    dm = TextDataModule(cache_dir=str(tmp_path), **kw)
    dm.setup()
    return dm


def test_split_is_90_10(tmp_path):
    dm = _datamodule(tmp_path)
    n = len(dm.train_tokens) + len(dm.val_tokens)
    assert n == 1115394
    assert len(dm.val_tokens) == int(n * 0.1)
    assert dm.train_tokens[-1] == tokenize_cached(dm.path, "char", tmp_path)[0][len(dm.train_tokens) - 1]


def test_validation_batches_are_the_same_every_time_and_every_run(tmp_path):
    a = list(_datamodule(tmp_path, seed=1, eval_batches=3).val_dataloader())
    b = list(_datamodule(tmp_path, seed=2, eval_batches=3).val_dataloader())
    again = list(_datamodule(tmp_path, seed=1, eval_batches=3).val_dataloader())
    assert len(a) == 3 and a[0].shape == (12, 65)
    for x, y, z in zip(a, b, again):
        assert torch.equal(x, y) and torch.equal(x, z)


def test_full_validation_covers_the_split_in_non_overlapping_windows(tmp_path):
    dm = _datamodule(tmp_path)
    windows = torch.cat(list(dm.full_val_dataloader()))
    T = dm.block_size
    assert len(windows) == (len(dm.val_tokens) - 1) // T
    # consecutive windows continue each other: window i's inputs are tokens [iT, iT + T)
    flat = windows[:, :-1].reshape(-1)
    assert torch.equal(flat, torch.from_numpy(dm.val_tokens[: len(flat)].astype(np.int64)))


def test_training_batches_depend_on_seed_and_step_only():
    tokens = np.arange(1000, dtype=np.uint16)
    a = RandomWindows(tokens, batch_size=4, block_size=8, seed=0)
    b = RandomWindows(tokens, batch_size=4, block_size=8, seed=0, start_step=5)
    stream = iter(a)
    batches = [next(stream) for _ in range(6)]
    assert torch.equal(batches[5], next(iter(b)))  # a resumed stream continues the same order
    assert not torch.equal(batches[0], batches[1])
    assert not torch.equal(batches[0], RandomWindows(tokens, 4, 8, seed=1).batch(0))
    # windows are contiguous runs of block_size + 1 tokens
    assert batches[0].shape == (4, 9)
    assert torch.equal(batches[0][:, 1:] - batches[0][:, :-1], torch.ones(4, 8, dtype=torch.long))


def test_ranks_split_the_global_batch():
    tokens = np.arange(1000, dtype=np.uint16)
    whole = RandomWindows(tokens, batch_size=4, block_size=8, seed=0).batch(3)
    halves = [RandomWindows(tokens, 4, 8, seed=0, rank=r, world_size=2).batch(3) for r in (0, 1)]
    assert torch.equal(whole[0::2], halves[0]) and torch.equal(whole[1::2], halves[1])


@pytest.mark.parametrize(
    "content, message",
    [
        (None, r"data.path=.*missing.txt: no such file"),
        (b"", r"data.path=.*is empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", r"data.path=.*looks binary \(a NUL byte at offset 8\)"),
        ("caf\u00e9 au lait".encode("latin-1"), r"data.path=.*is not UTF-8 \(byte 0xe9 at offset 3\)"),
        (b"too short", r"has 9 char tokens, so its training split has 9, fewer than block_size \+ 1 = 65"),
    ],
)
def test_bad_data_fails_with_one_clear_line(tmp_path, content, message):
    path = tmp_path / "missing.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError, match=message) as info:
        _datamodule(tmp_path / "cache", path=str(path))
    assert "\n" not in str(info.value)


def test_char_tokenizer_refuses_unknown_characters():
    tok = CharTokenizer.from_text("abc")
    assert tok.encode("cab") == [2, 0, 1]
    with pytest.raises(ValueError, match=r"character 'z' is not in this model's vocabulary of 3 characters"):
        tok.encode("z")

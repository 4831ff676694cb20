"""Large text: tokenized block by block, in parallel, into shards, equal to tokenizing it in one piece."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from ablate.data import TextDataModule, make_datamodule, tokenize_cached
from ablate.errors import DataError
from ablate.shards import open_shard, open_tokens
from ablate.tokenize_corpus import EOT, cut_point, pieces, tokenize_files
from ablate.tokenizers import CharTokenizer, gpt2_encoding

# what breaks naive cuts: runs of spaces and newlines, tabs, non-ASCII whitespace (NBSP, ideographic space),
# contractions, digits, punctuation, multi-byte characters
ALPHABET = [*"abc XYZ\n\n  \t'.,;!?019", "é", "\u00a0", "\u3000", "日本", " \n", "'s", "'ll", "\r\n", "  \n\n"]


def adversarial_text(n: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice(ALPHABET) for _ in range(n))


def shards_of(info, folder):
    return np.asarray(open_tokens(folder / name for name in info["shards"]))


@pytest.mark.parametrize("block", [5, 37, 4096])
def test_blockwise_parallel_tokens_equal_one_piece(tmp_path, block):
    text = adversarial_text(60_000, seed=block)
    path = tmp_path / "t.txt"
    path.write_text(text, encoding="utf-8")
    info = tokenize_files([path], "gpt2", tmp_path / "out" / "t", threads=2, block_bytes=block)
    assert len(list(pieces(path, block))) > 10  # it really was cut
    assert np.array_equal(shards_of(info, tmp_path / "out"), gpt2_encoding().encode_ordinary(text))


def test_naive_cuts_would_change_the_tokens():
    """The test above can fail: cutting after any newline gives other tokens on this text."""
    enc, text = gpt2_encoding(), adversarial_text(20_000)
    naive = [t + "\n" for t in text.split("\n")[:-1]] + [text.split("\n")[-1]]
    assert "".join(naive) == text
    assert [i for part in naive for i in enc.encode_ordinary(part)] != enc.encode_ordinary(text)


def test_cut_points_keep_tokenization():
    assert cut_point(b"ab\ncd") == 3  # after a newline between printable characters
    assert cut_point(b"ab \ncd") == 0  # not after " \n": the whole text has " " and "\n", a block " \n"
    assert cut_point(b"x\n\ny z") == 4  # no good newline: before a space between a character and a letter
    assert cut_point(b"abc") == 0


def test_char_streaming_equals_the_in_memory_tokenizer(tmp_path):
    text = adversarial_text(20_000, seed=3)
    path = tmp_path / "t.txt"
    path.write_text(text, encoding="utf-8")
    info = tokenize_files([path], "char", tmp_path / "c", block_bytes=64)
    tok = CharTokenizer.from_text(text)
    assert info["tokenizer"] == tok.state()
    assert shards_of(info, tmp_path).tolist() == tok.encode(text)


def test_a_folder_is_its_files_in_order_with_endoftext_between(tmp_path):
    (tmp_path / "docs" / "sub").mkdir(parents=True)
    (tmp_path / "docs" / "b.txt").write_text("Second document.")
    (tmp_path / "docs" / "a.txt").write_text("First document.\n")
    (tmp_path / "docs" / "sub" / "c.txt").write_text("Third.")
    (tmp_path / "docs" / ".hidden").write_text("never read")
    tokens, tok = tokenize_cached(tmp_path / "docs", "gpt2", tmp_path / "cache")
    enc = gpt2_encoding()
    expected = [*enc.encode("First document.\n"), EOT, *enc.encode("Second document."), EOT, *enc.encode("Third.")]
    assert np.asarray(tokens).tolist() == expected


def test_shards_roll_over_at_the_token_limit(tmp_path):
    path = tmp_path / "t.txt"
    text = "word" + " word" * 2999  # 3000 tokens
    path.write_text(text)
    info = tokenize_files([path], "gpt2", tmp_path / "s", block_bytes=100, max_shard_tokens=1000)
    assert info["tokens"] == 3000 and len(info["shards"]) == 3
    assert [len(open_shard(tmp_path / s)) for s in info["shards"]] == [1000, 1000, 1000]
    assert shards_of(info, tmp_path).tolist() == gpt2_encoding().encode_ordinary(text)


def test_tokenized_once_into_the_cache(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("hello world\n" * 100)
    tokenize_cached(path, "gpt2", tmp_path / "cache")
    (shard,) = (tmp_path / "cache").glob("*.bin")
    stamp = shard.stat().st_mtime_ns
    tokens, _ = tokenize_cached(path, "gpt2", tmp_path / "cache")
    assert shard.stat().st_mtime_ns == stamp and isinstance(tokens, np.memmap)
    assert open_shard(shard).tolist() == gpt2_encoding().encode_ordinary("hello world\n" * 100)


def test_data_text_with_a_separate_validation_file(tmp_path, compose_cfg):
    (tmp_path / "train.txt").write_text("The quick brown fox jumps over the lazy dog.\n" * 50)
    (tmp_path / "val.txt").write_text("A lazy dog sleeps.\n" * 10)
    cfg = compose_cfg(
        "data=text", f"data.path={tmp_path / 'train.txt'}", f"data.val_path={tmp_path / 'val.txt'}",
        f"data.cache_dir={tmp_path / 'cache'}", "model.block_size=16",
    )
    dm = make_datamodule(OmegaConf.to_container(cfg.data, resolve=True), seed=1)
    dm.setup()
    assert isinstance(dm, TextDataModule) and dm.tokenizer.kind == "gpt2"
    assert np.asarray(dm.val_tokens).tolist() == gpt2_encoding().encode("A lazy dog sleeps.\n" * 10)
    assert len(dm.train_tokens) == len(gpt2_encoding().encode("The quick brown fox jumps over the lazy dog.\n" * 50))


def test_a_validation_text_shorter_than_a_block_is_refused(tmp_path):
    (tmp_path / "train.txt").write_text("hello there\n" * 100)
    (tmp_path / "val.txt").write_text("hi")
    dm = TextDataModule(str(tmp_path / "train.txt"), "gpt2", 4, 16, val_path=str(tmp_path / "val.txt"),
                        cache_dir=str(tmp_path / "c"))
    with pytest.raises(DataError, match=r"data.val_path=.*val.txt has 1 gpt2 tokens, fewer than block_size \+ 1 = 17"):
        dm.setup()


def test_not_utf8_deep_in_a_large_file_names_its_offset(tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes(b"ok line\n" * 10_000 + b"caf\xe9\n")
    with pytest.raises(DataError, match=r"is not UTF-8 \(byte 0xe9 at offset 80003\)"):
        tokenize_files([path], "gpt2", tmp_path / "s", block_bytes=1000)
    assert not list(tmp_path.glob("s_*"))  # nothing half-written is left behind


def test_the_measurement_script_reports_speed_memory_and_equality(tmp_path):
    script = Path(__file__).parents[1] / "scripts" / "measure-tokenize"
    proc = subprocess.run([sys.executable, str(script), "--mb", "2", "--prefix-mb", "1", "--threads", "2",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((tmp_path / "tokenize.json").read_text())
    assert result["bytes"] == 2 << 20 and result["equal_to_one_piece"] and result["mb_per_s"] > 0
    assert 20e6 < result["peak_rss_bytes"] < 1e9 and 0 < result["equality_prefix_bytes"] <= 1 << 20
    assert result["tokens"] > result["equality_prefix_tokens"] > 100_000
    assert "MB/s" in (tmp_path / "tokenize.md").read_text()

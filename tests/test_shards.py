"""Token shards: both formats written here by the test, read memory-mapped, served as windows, bad ones refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from ablate.data import ShardDataModule, make_datamodule
from ablate.errors import DataError
from ablate.shards import HEADER_BYTES, Tokens, find_shards, open_shard, shard_format, write_shard


def nanogpt_bin(path, tokens):
    """nanoGPT's prepare.py: ``np.array(ids, dtype=np.uint16).tofile(path)``, no header."""
    np.asarray(tokens, dtype=np.uint16).tofile(path)
    return path


def llmc_bin(path, tokens, magic=20240520, version=1, count=None, dtype=np.uint16):
    """llm.c's write_datafile: 256 int32s (magic, version, token count), then the tokens."""
    header = np.zeros(256, dtype=np.int32)
    header[:3] = magic, version, len(tokens) if count is None else count
    path.write_bytes(header.tobytes() + np.asarray(tokens, dtype=dtype).tobytes())
    return path


def test_both_formats_are_recognised_from_the_file_not_the_name(tmp_path):
    tokens = np.arange(1000, dtype=np.uint16) * 50
    # the names lie: an llm.c shard called train.bin, a raw nanoGPT file called fineweb_train_000001.bin
    llmc = llmc_bin(tmp_path / "train.bin", tokens)
    raw = nanogpt_bin(tmp_path / "fineweb_train_000001.bin", tokens)
    assert shard_format(llmc)[0] == "llmc" and shard_format(raw)[0] == "nanogpt"
    for path in (llmc, raw):
        read = open_shard(path)
        assert isinstance(read, np.memmap) and read.dtype == np.uint16
        assert np.array_equal(read, tokens)
    assert llmc.stat().st_size == HEADER_BYTES + 2000


def test_llmc_uint32_shards_and_our_writer(tmp_path):
    tokens = np.array([5, 70000, 3], dtype=np.uint32)
    path = llmc_bin(tmp_path / "llama.bin", tokens, magic=20240801, version=7, dtype=np.uint32)
    assert open_shard(path).dtype == np.uint32 and open_shard(path).tolist() == [5, 70000, 3]
    write_shard(tmp_path / "ours.bin", np.array([1, 2, 50256]))
    assert (tmp_path / "ours.bin").read_bytes() == llmc_bin(tmp_path / "theirs.bin", [1, 2, 50256]).read_bytes()


def test_several_shards_read_as_one_sequence(tmp_path):
    parts = [np.arange(i * 100, i * 100 + n, dtype=np.uint16) for i, n in enumerate((30, 1, 50))]
    whole = np.concatenate(parts)
    tokens = Tokens(parts)
    assert len(tokens) == 81
    idx = np.array([[0, 29, 30, 31], [80, 31, 0, 45]])
    assert np.array_equal(tokens[idx], whole[idx])
    view = tokens[25:60]
    assert len(view) == 35 and np.array_equal(view.to_array(), whole[25:60])
    assert np.array_equal(view[np.array([0, 5, 6, 34])], whole[25:60][[0, 5, 6, 34]])
    with pytest.raises(IndexError):
        view[np.array([35])]


def test_folder_and_glob_of_shards(tmp_path):
    (tmp_path / "d").mkdir()
    for i in range(3):
        llmc_bin(tmp_path / "d" / f"fineweb_train_{i:06d}.bin", [i] * 10)
    llmc_bin(tmp_path / "d" / "fineweb_val_000000.bin", [9] * 10)
    assert len(find_shards(tmp_path / "d")) == 4
    train = find_shards(str(tmp_path / "d" / "fineweb_train_*.bin"))
    assert [p.name for p in train] == [f"fineweb_train_{i:06d}.bin" for i in range(3)]


def _dm(**kw):
    kw = {"batch_size": 4, "block_size": 8, "eval_batches": 2, **kw}
    dm = ShardDataModule(**kw)
    dm.setup()
    return dm


def test_shard_datamodule_serves_windows_of_the_shards(tmp_path):
    rng = np.random.default_rng(0)
    train = rng.integers(0, 50257, 5000).astype(np.uint16)
    val = rng.integers(0, 50257, 300).astype(np.uint16)
    llmc_bin(tmp_path / "a.bin", train[:2000])
    nanogpt_bin(tmp_path / "b.bin", train[2000:])  # formats may be mixed: each file says what it is
    llmc_bin(tmp_path / "val.bin", val)
    dm = _dm(path=str(tmp_path / "[ab].bin"), val_path=str(tmp_path / "val.bin"))
    assert dm.state() == {"tokens_train": 5000, "tokens_val": 300, "shards": 3, "formats": ["llmc", "nanogpt"]}
    batch = next(iter(dm.train_dataloader()))
    assert batch.shape == (4, 9) and batch.dtype == torch.int64
    for row in batch.numpy():  # every row is a contiguous window of the training tokens
        start = np.flatnonzero((np.lib.stride_tricks.sliding_window_view(train, 9) == row).all(1))
        assert len(start) >= 1
    windows = torch.cat(list(dm.full_val_dataloader()))
    assert torch.equal(windows[:, :-1].reshape(-1), torch.from_numpy(val[: windows[:, :-1].numel()].astype(np.int64)))


def test_without_val_path_the_tail_is_validation(tmp_path):
    tokens = np.arange(1000, dtype=np.uint16)
    dm = _dm(path=str(nanogpt_bin(tmp_path / "train.bin", tokens)))
    assert len(dm.train_tokens) == 900 and int(dm.val_tokens[0]) == 900
    # several shards: the tail of their concatenation, served as windows that may span two shards
    for i in range(4):
        llmc_bin(tmp_path / f"s{i}.bin", tokens[i * 250 : (i + 1) * 250])
    dm = _dm(path=str(tmp_path / "s?.bin"), block_size=30)
    assert isinstance(dm.val_tokens, Tokens) and len(dm.val_tokens) == 100
    windows = torch.cat(list(dm.full_val_dataloader()))  # non-overlapping windows of 31 tokens
    assert torch.equal(windows, torch.stack([torch.arange(900 + 30 * i, 931 + 30 * i) for i in range(3)]))
    fixed = torch.cat(list(dm.val_dataloader()))  # the fixed evaluation windows: contiguous runs of the tail
    assert fixed.shape == (8, 31) and torch.equal(fixed[:, 1:] - fixed[:, :-1], torch.ones(8, 30, dtype=torch.long))
    assert fixed.min() >= 900


def test_data_shards_composes_and_builds_from_the_config(tmp_path, compose_cfg):
    path = llmc_bin(tmp_path / "t.bin", np.arange(3000) % 50257)
    cfg = compose_cfg("data=shards", f"data.path={path}", "model.block_size=32")
    dm = make_datamodule(OmegaConf.to_container(cfg.data, resolve=True), seed=cfg.seed)
    dm.setup()
    assert isinstance(dm, ShardDataModule) and dm.block_size == 32 and dm.tokenizer.vocab_size == 50257
    with pytest.raises(DataError, match=r"^data.path is required by this data config"):
        make_datamodule(OmegaConf.to_container(compose_cfg("data=shards").data, resolve=True), seed=1)


@pytest.mark.parametrize(
    "make, kw, message",
    [
        (lambda d: None, {}, r"data.path=.*missing.bin: no such shard, folder or pattern"),
        (lambda d: (d / "empty").mkdir(), {"path": "empty"}, r"data.path=.*empty is a folder with no shards"),
        (lambda d: None, {"path": "nomatch_*.bin"}, r"data.path=.*nomatch_\*.bin: no shard matches"),
        (lambda d: llmc_bin(d / "missing.bin", [1] * 100, count=150),
         {}, r"shard .*missing.bin: its header says 150 uint16 tokens \(1324 bytes.*but the file has 1224 bytes"),
        (lambda d: (d / "missing.bin").write_bytes(b"\x01\x02\x03"), {},
         r"shard .*missing.bin: 3 bytes is not a whole number of uint16 tokens"),
        (lambda d: llmc_bin(d / "missing.bin", [1] * 10, version=3), {}, r"magic 20240520 and version 3"),
        # uint32 tokens read as nanoGPT's uint16: the high halves are 0, the low ones out of GPT-2's range
        (lambda d: (d / "missing.bin").write_bytes(np.full(100, 60000 + 65536, np.uint32).tobytes()), {},
         r"shard .*missing.bin: token id 60000 at position 0 is not in the vocabulary of 50257"),
        (lambda d: nanogpt_bin(d / "missing.bin", [1] * 100) and nanogpt_bin(d / "v.bin", [1] * 5),
         {"val_path": "v.bin"}, r"data.val_path=.*v.bin has 5 gpt2 tokens, fewer than block_size \+ 1 = 9"),
        (lambda d: nanogpt_bin(d / "missing.bin", [1] * 100) and nanogpt_bin(d / "v.bin", [1, 2, 50257] * 5),
         {"val_path": "v.bin"}, r"shard .*v.bin: token id 50257 at position 2"),
    ],
)
def test_bad_shards_fail_with_one_clear_line(tmp_path, make, kw, message):
    make(tmp_path)
    kw = {k: str(tmp_path / v) for k, v in kw.items()}
    with pytest.raises(DataError, match=message) as info:
        _dm(**{"path": str(tmp_path / "missing.bin"), **kw})
    assert "\n" not in str(info.value)


def test_a_bad_token_deep_in_a_shard_stops_the_batch_that_reads_it(tmp_path):
    tokens = np.ones(3_000_000, dtype=np.uint16)  # longer than the prefix checked at the start
    tokens[-50:] = 60000
    dm = _dm(path=str(nanogpt_bin(tmp_path / "t.bin", tokens)), val_path=str(nanogpt_bin(tmp_path / "v.bin", [1] * 20)))
    dm.train_tokens = dm.train_tokens[-40:]  # only the bad tail left to draw from
    windows = dm.windows(0, 0, 1)
    with pytest.raises(DataError, match=r"data.path=.*t.bin \(training batch 0\): token id 60000"):
        windows.batch(0)

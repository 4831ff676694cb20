"""Real training runs: a real Lightning Trainer, real Hydra configs, real offline wandb runs."""

import csv
import json
import math
import os
import re
from pathlib import Path

import pytest
import torch
from conftest import TINY, wandb_records
from lightning.pytorch.callbacks import Callback

from ablate.checkpoints import load_checkpoint
from ablate.config import preset_choices
from ablate.errors import ConfigError, DataError
from ablate.lit import LitGPT, RichBar
from ablate.train import run, wandb_mode

pytestmark = pytest.mark.slow

# A short real run: 30 steps, an evaluation every 10 on 2 fixed batches.
SHORT = [
    "trainer.max_steps=30",
    "trainer.val_check_interval=10",
    "trainer.log_every_n_steps=5",
    "trainer.enable_progress_bar=false",
    "data.eval_batches=2",
    "sample.max_new_tokens=16",
    "optim.warmup_steps=5",
    "data.val_fraction=0.01",  # a short final evaluation over the whole (1%) validation split
]


class RecordWrites(Callback):
    """The global steps before which ``metrics.csv`` was found rewritten (atomic writes: a new file each time)."""

    def __init__(self, path: Path) -> None:
        self.path, self.last, self.changed_before = path, None, []

    def on_train_batch_start(self, trainer, *args) -> None:
        st = os.stat(self.path)
        if self.last is not None and (st.st_ino, st.st_mtime_ns) != self.last:
            self.changed_before.append(trainer.global_step)
        self.last = (st.st_ino, st.st_mtime_ns)


def test_short_run_writes_its_record_and_an_offline_wandb_run(compose_cfg, tmp_path):
    cfg = compose_cfg(*SHORT, "logger.mode=offline", "logger.group=unit", "model/norm=post", "sample.every=20")
    writes = RecordWrites(tmp_path / "metrics.csv")
    summary = run(cfg, tmp_path, callbacks=[writes])
    # rewritten at each checkpoint and evaluation (every 10 steps), not at each logging step (every 5)
    assert writes.changed_before == [10, 20]

    # the local record
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved == summary
    assert saved["status"] == "completed" and saved["steps"] == 30
    assert saved["choices"]["norm"] == "post" and saved["choices"]["activation"] == "gelu_tanh"
    assert saved["name"] == "gpt2-norm=post-s1337"
    assert saved["n_params"] == 809856 - 2 * 128  # post-norm has no final layer norm (weight + bias)
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    # every row is a training step that logged (steps 4, 9, ... with log_every_n_steps=5) or the final evaluation;
    # evaluation batches never show up as steps of their own
    assert [int(r["step"]) for r in rows] == [*range(4, 30, 5), 30]
    assert not [k for k in rows[0] if k.startswith("validate/")]
    # tokens/s counts training time alone: evaluations (3 of them, and the final one) are not in it
    train_time = float(rows[-2]["train/time"])
    assert saved["tokens_per_sec"] == pytest.approx(float(rows[-2]["train/lengths"]) / train_time, rel=1e-3)
    assert 0 < train_time < saved["wall_time_s"]
    val = [float(r["val/loss"]) for r in rows if r.get("val/loss")]
    assert len(val) == 3 and saved["val_loss_best"] == min(val) and saved["val_loss_last"] == val[-1]
    assert val[-1] < math.log(65)  # it learned something: below the uniform guess
    assert abs(saved["val_loss_final"] - val[-1]) < 0.3  # the whole split agrees with the fixed batches
    # a sample at the first evaluation at or after every 20 steps (20) and at the last one (30), not at 10
    assert re.findall(r"===== step (\d+) =====", (tmp_path / "samples.txt").read_text()) == ["20", "30"]
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()

    # the offline wandb run holds the config, the per-slot keys, the tags and the metrics
    records = wandb_records(tmp_path)
    run_record = next(r["run"] for r in records if r["type"] == "run")
    config = run_record["config"]["update"]
    assert config["norm"] == "post" and config["positional"] == "learned" and config["preset"] == "gpt2"
    assert config["model"]["norm"] == {"name": "post"} and config["trainer"]["max_steps"] == 30
    assert run_record["display_name"] == "gpt2-norm=post-s1337"
    assert "norm=post" in run_record["tags"]
    assert run_record["run_group"] == "unit"
    logged: dict[str, list] = {}
    for record in records:
        if record["type"] == "history":
            for key, value in record["history"]["item"].items():
                logged.setdefault(key, []).append(value)
    assert logged["val/loss"] == pytest.approx(val, rel=1e-6)
    assert logged["final/loss"] == pytest.approx([saved["val_loss_final"]], rel=1e-6)
    assert len(logged["train/loss"]) == 6  # every 5 steps


class RedrawThreads(Callback):
    """The progress bar's redraw threads, as found during training and the final evaluation."""

    def __init__(self) -> None:
        self.threads: set = set()

    def _grab(self, trainer, *_) -> None:
        self.threads.add(trainer.progress_bar_callback.progress.live._refresh_thread)

    on_train_batch_end = on_validation_batch_end = _grab


def test_progress_bar_does_not_wait_for_its_redraw_thread(compose_cfg, tmp_path):
    """Lightning's RichProgressBar joins its redraw thread when it stops, and the thread sleeps 1/refresh_rate s
    between redraws; here 20 s. Ours tells the thread to end and goes on, so the run finishes while the
    threads still sleep; Lightning's would have waited for each (and this test would find them gone)."""
    cfg = compose_cfg(*SHORT, "trainer.max_steps=4", "trainer.enable_progress_bar=true", "logger.mode=disabled")
    threads = RedrawThreads()
    summary = run(cfg, tmp_path, callbacks=[RichBar(refresh_rate=0.05), threads])  # run() adds no bar of its own
    assert summary["status"] == "completed"
    assert len(threads.threads) == 2  # one for training, one for the final evaluation
    for thread in threads.threads:
        assert thread.done.is_set() and thread.is_alive()


def test_checkpoint_rebuilds_any_variant(compose_cfg, tmp_path):
    cfg = compose_cfg(
        *SHORT, "trainer.max_steps=13", "logger.mode=disabled", "model=seed",
        "model/positional=sinusoidal", "model/layernorm=custom",
    )
    run(cfg, tmp_path)
    # the final weights: saved at the end of training too, not only at the evaluation at step 10
    assert load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")["global_step"] == 13
    module = LitGPT.load_from_checkpoint(tmp_path / "checkpoints" / "last.ckpt", weights_only=True).eval()
    assert module.model.config.choices() == {
        **preset_choices("seed"), "positional": "sinusoidal", "layernorm": "custom",
    }
    assert module.model.config.choices()["qkv"] == "per_head_shared"  # the seed's, rebuilt
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    for key, value in module.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert module.tokenizer.decode(module.tokenizer.encode("ROMEO:")) == "ROMEO:"


def test_same_seed_same_losses(compose_cfg, tmp_path):
    losses = []
    for name in ("a", "b"):
        run(compose_cfg(*SHORT, "trainer.max_steps=10", "logger.mode=disabled"), tmp_path / name)
        rows = list(csv.DictReader(open(tmp_path / name / "metrics.csv")))
        losses.append([r["train/loss"] for r in rows if r.get("train/loss")])
    assert losses[0] == losses[1] and len(losses[0]) == 2


def test_block_size_beyond_the_learned_table_is_refused(compose_cfg, tmp_path):
    cfg = compose_cfg(*SHORT, "logger.mode=disabled", "data.block_size=128")
    with pytest.raises(ConfigError, match=r"data.block_size=128 exceeds the learned positional table \(64 positions"):
        run(cfg, tmp_path)


def test_bad_data_is_refused_before_training(compose_cfg, tmp_path):
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(DataError, match="is empty"):
        run(compose_cfg(*SHORT, "logger.mode=disabled", f"data.path={tmp_path / 'empty.txt'}"), tmp_path / "out")


def test_wandb_mode_never_prompts(monkeypatch, tmp_path):
    """auto: offline without a key; online with one; an explicit mode or WANDB_MODE wins."""
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    assert wandb_mode("auto") == "offline"
    (tmp_path / "netrc").write_text("machine api.wandb.ai\n  login user\n  password " + "k" * 40 + "\n")
    assert wandb_mode("auto") == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_mode("auto") == "disabled"
    assert wandb_mode("offline") == "offline"


def test_bf16_autocast_trains_on_the_cpu(compose_cfg, tmp_path):
    """The GPU path's mixed precision, run where CI can: bf16 autocast on the CPU trains and records finite losses."""
    summary = run(compose_cfg(*SHORT, "trainer.max_steps=10", "trainer.precision=bf16-mixed", "logger.mode=disabled"),
                  tmp_path)
    assert summary["status"] == "completed" and summary["steps"] == 10
    assert math.isfinite(summary["val_loss_final"]) and summary["val_loss_final"] < math.log(65) + 0.5
    saved = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["hyper_parameters"]["model"]["preset"] == "gpt2"
    assert all(v.dtype == torch.float32 for v in saved["state_dict"].values())  # fp32 master weights


@pytest.mark.parametrize("preset", ["seed", "modern"])
def test_model_compile_matches_eager(compose_cfg, tmp_path, preset):
    """model.compile=true compiles the model in place (parameter names unchanged) and computes what eager does."""
    cfg = compose_cfg(f"model={preset}", "model.n_layer=2", "model.n_embd=32", "model.block_size=16", "model.compile=true")
    from omegaconf import OmegaConf

    tokenizer = {"kind": "char", "chars": "abcdefghij"}
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    torch.manual_seed(0)
    compiled = LitGPT(model=model_cfg, optim=OmegaConf.to_container(cfg.optim, resolve=True), tokenizer=tokenizer)
    torch.manual_seed(0)
    eager = LitGPT(model={**model_cfg, "compile": False}, optim=OmegaConf.to_container(cfg.optim, resolve=True), tokenizer=tokenizer)
    assert list(compiled.state_dict()) == list(eager.state_dict())
    idx = torch.randint(0, 10, (2, 16))
    (a, loss_a), (b, loss_b) = compiled.model(idx, idx), eager.model(idx, idx)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    loss_a.backward()
    loss_b.backward()
    for (name, p), q in zip(compiled.model.named_parameters(), eager.model.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-4, rtol=1e-3, msg=name)


@pytest.mark.slow
def test_a_compiled_run_compiles_one_graph_for_training_and_one_for_evaluation(compose_cfg, tmp_path):
    """Sampling (a new context length each token), the attention diagnostics (hooks), the memory probe, the final
    evaluation's shorter last batch and its inference mode each used to compile graphs of their own (8 in all
    here): they run eagerly or reuse the evaluation graph now."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    summary = run(compose_cfg(*TINY, "model.compile=true", "trainer.max_steps=20", "trainer.val_check_interval=10",
                              "data.eval_batches=2", "sample.max_new_tokens=20", "sample.every=null", "logger.mode=disabled",
                              "trainer.enable_progress_bar=false", "data.val_fraction=0.01"), tmp_path)
    assert summary["status"] == "completed" and summary["steps"] == 20
    assert counters["stats"]["unique_graphs"] == 2
    assert (tmp_path / "samples.txt").read_text().count("===== step") == 2  # it sampled at both evaluations

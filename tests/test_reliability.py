"""Runs survive interruption bit for bit; failures are recorded, not fatal; checkpoints are never half-written."""

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from conftest import ROOT, cli, start_cli
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.exceptions import SIGTERMException

from ablate.checkpoints import AtomicCheckpointIO, load_checkpoint
from ablate.errors import CheckpointError
from ablate.train import run, run_identity

# 40 steps, an evaluation and a checkpoint every 10, dropout on (so the RNG state matters)
RUN = [
    "trainer.max_steps=40", "trainer.val_check_interval=10", "trainer.log_every_n_steps=5",
    "trainer.enable_progress_bar=false", "data.eval_batches=2", "sample.max_new_tokens=4",
    "logger.mode=disabled", "model.dropout=0.1",
    "data.val_fraction=0.01",  # a short final evaluation over the whole (1%) validation split
]


class PreemptAt(Callback):
    """Send this process SIGTERM during step ``step``, as a scheduler pre-empting the job would."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, *args) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


def curves(run_dir: Path) -> list[tuple[str, str, str]]:
    rows = list(csv.DictReader(open(run_dir / "metrics.csv")))
    return [(r["step"], r.get("train/loss", ""), r.get("val/loss", "")) for r in rows if r.get("train/loss") or r.get("val/loss")]


class DiskAtEachCheckpoint(Callback):
    """What a kill right after each checkpoint would leave: the step a relaunch resumes from, and the rows on disk."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.seen: list[tuple[int, list[tuple[str, str, str]]]] = []

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        self.seen.append((checkpoint["global_step"], curves(self.run_dir)))


@pytest.mark.slow
def test_a_kill_right_after_any_checkpoint_loses_no_logged_row(compose_cfg, tmp_path):
    # a relaunch resumes after the checkpoint's step and never logs the steps before it again: their rows,
    # the evaluation at the checkpoint's step included, must be on disk when the checkpoint is
    disk = DiskAtEachCheckpoint(tmp_path)
    run(compose_cfg(*RUN), tmp_path, callbacks=[disk])
    final = curves(tmp_path)
    assert [step for step, _ in disk.seen] == [10, 20, 30, 40]  # one checkpoint per evaluation
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["last.ckpt"]
    for step, on_disk in disk.seen:
        assert on_disk == [row for row in final if int(row[0]) < step], step


@pytest.mark.slow
def test_stop_and_resume_equals_an_uninterrupted_run_exactly(compose_cfg, tmp_path):
    whole = run(compose_cfg(*RUN), tmp_path / "whole")
    with pytest.raises(SIGTERMException):
        run(compose_cfg(*RUN), tmp_path / "split", callbacks=[PreemptAt(16)])
    stopped = json.loads((tmp_path / "split" / "summary.json").read_text())
    assert stopped["status"] == "interrupted" and stopped["error"].startswith("SIGTERMException at step 17")
    assert load_checkpoint(tmp_path / "split" / "checkpoints" / "last.ckpt")["global_step"] == 17
    resumed = run(compose_cfg(*RUN), tmp_path / "split")  # the same run relaunched: it resumes
    assert resumed["status"] == "completed" and resumed["resumed"] == 1
    assert curves(tmp_path / "whole") == curves(tmp_path / "split")  # every logged loss, bit for bit
    assert len(curves(tmp_path / "whole")) == 8
    assert resumed["val_loss_final"] == whole["val_loss_final"]
    a = load_checkpoint(tmp_path / "whole" / "checkpoints" / "last.ckpt")["state_dict"]
    b = load_checkpoint(tmp_path / "split" / "checkpoints" / "last.ckpt")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_a_finished_run_is_skipped_when_relaunched(compose_cfg, tmp_path):
    first = run(compose_cfg(*RUN, "trainer.max_steps=5", "trainer.val_check_interval=5"), tmp_path)
    mtime = (tmp_path / "summary.json").stat().st_mtime_ns
    again = run(compose_cfg(*RUN, "trainer.max_steps=5", "trainer.val_check_interval=5"), tmp_path)
    assert again["skipped"] and again["val_loss_final"] == first["val_loss_final"]
    assert (tmp_path / "summary.json").stat().st_mtime_ns == mtime
    # a different run taking over the folder keeps the earlier one's results aside
    other = run(compose_cfg(*RUN, "trainer.max_steps=6", "trainer.val_check_interval=6"), tmp_path)
    assert other["status"] == "completed" and other["steps"] == 6
    kept = json.loads((tmp_path / f"replaced-{first['run_id']}" / "summary.json").read_text())
    assert kept["steps"] == 5 and kept["val_loss_final"] == first["val_loss_final"]


@pytest.mark.parametrize("arm, overrides", [
    ("gpt2", ["model=gpt2"]),
    ("modern", ["model=modern"]),
    ("gpt2+mlp=swiglu", ["model=gpt2", "model/mlp=swiglu"]),
])
def test_committed_runs_keep_their_identity_so_relaunching_their_sweep_skips_them(compose_cfg, arm, overrides):
    """Settings added since a study ran (model.vocab_multiple) must not turn its finished runs into new ones."""
    record = json.loads((ROOT / "reports/gpt2_to_modern/records" / arm / "seed=2" / "summary.json").read_text())
    assert run_identity(compose_cfg(*overrides, "seed=2")) == record["run_id"]
    assert run_identity(compose_cfg(*overrides, "seed=2", "model.vocab_multiple=64")) != record["run_id"]


@pytest.mark.parametrize("arm, overrides, lr", [("gpt2", ["model=gpt2"], "0.004"),
                                                ("gpt2+norm=post", ["model=gpt2", "model/norm=post"], "0.002")])
def test_the_tuned_studys_runs_keep_their_identity_so_it_continues_from_this_checkout(compose_cfg, arm, overrides, lr):
    """seed_to_gpt2_tuned ran from an older commit; its records seeded into multirun/ are skipped by this code."""
    record = json.loads((ROOT / "reports/seed_to_gpt2_tuned/records" / arm / f"lr={lr}" / "seed=2" / "summary.json")
                        .read_text())
    assert run_identity(compose_cfg("sweeps=seed_to_gpt2_tuned", *overrides, f"optim.lr={lr}", "seed=2")) == \
        record["run_id"]


@pytest.mark.parametrize("record, overrides", [
    ("seed_to_gpt2_tuned/records/gpt2/lr=0.008/seed=3", ["model=gpt2", "optim.lr=0.008", "seed=3"]),
    ("gpt2_to_modern/records/modern/seed=1", ["model=modern", "optim.lr=0.001", "seed=1"]),
])
def test_the_recipe_study_takes_over_runs_of_the_same_identity_from_other_studies(compose_cfg, record, overrides):
    """sweeps=recipe's AdamW-with-cosine arms are those studies' runs (same resolved settings, same seed): copied
    into its folder, they are skipped, not rerun; a Muon or WSD arm is another run."""
    run_id = json.loads((ROOT / "reports" / record / "summary.json").read_text())["run_id"]
    assert run_identity(compose_cfg("sweeps=recipe", *overrides)) == run_id
    assert run_identity(compose_cfg("sweeps=recipe", *overrides, "optim/optimizer=muon")) != run_id
    assert run_identity(compose_cfg("sweeps=recipe", *overrides, "optim/schedule=wsd")) != run_id


@pytest.mark.slow
def test_nan_stops_the_run_as_diverged(compose_cfg, tmp_path):
    summary = run(compose_cfg(*RUN, "optim.lr=1e6", "optim.warmup_steps=0", "trainer.gradient_clip_val=null"), tmp_path)
    assert summary["status"] == "diverged"
    assert "training loss" in summary["error"] and "at step" in summary["error"]
    assert summary["steps"] < 40 and "val_loss_final" not in summary
    assert not (tmp_path / "checkpoints").exists()  # diverged before the first evaluation: no NaN weights saved
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "diverged"


def wait_for(predicate, timeout: float = 120.0) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return
        time.sleep(0.2)
    raise TimeoutError


def steps_done(run_dir: Path) -> int:
    try:
        return json.loads((run_dir / "summary.json").read_text()).get("steps", 0)
    except (OSError, ValueError):
        return 0


SIGNAL_RUN = [
    "trainer.max_steps=100", "trainer.val_check_interval=20", "trainer.log_every_n_steps=5",
    "trainer.enable_progress_bar=false", "data.eval_batches=1", "sample.max_new_tokens=4", "logger.mode=offline",
    "data.val_fraction=0.01",
]


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_resume_continues(tmp_path):
    out = tmp_path / "run"
    proc = start_cli("ablate-train", *SIGNAL_RUN, f"hydra.run.dir={out}")
    wait_for(lambda: steps_done(out) >= 25)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "interrupted" and "SIGTERMException" in summary["error"]
    step = load_checkpoint(out / "checkpoints" / "last.ckpt")["global_step"]
    assert step >= 25  # saved on the signal, not just at the last periodic checkpoint (step 20)
    assert f"ablate-train resume={out}" in stdout

    resumed = cli("ablate-train", f"resume={out}", "trainer.max_steps=999", cwd=tmp_path, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    final = json.loads((out / "summary.json").read_text())
    assert final["status"] == "completed" and final["steps"] == 100 and final["resumed"] == 1
    assert "ignoring trainer.max_steps=999" in resumed.stdout  # resume continues the run as it was defined
    assert "exists and is not empty" not in resumed.stderr  # Lightning's warning about the checkpoint it resumes
    assert summary["wandb_id"] and final["wandb_id"] == summary["wandb_id"]  # the same wandb run continues
    attempts = sorted((out / "wandb").glob("offline-run-*"))
    assert len(attempts) == 2 and all(a.name.endswith(f"-{summary['wandb_id']}") for a in attempts)  # wandb sync merges


@pytest.mark.slow
def test_sigkill_then_relaunch_resumes_from_the_last_checkpoint(tmp_path, compose_cfg):
    # 100 steps: the record is written at evaluations (every 20), so the kill comes after step 40 at the
    # earliest, and the run must still have steps to go then, however slow the machine is
    args = [*SIGNAL_RUN[1:], "trainer.max_steps=100", "logger.mode=disabled", "model.dropout=0.1"]
    out = tmp_path / "run"
    proc = start_cli("ablate-train", *args, f"hydra.run.dir={out}")
    wait_for(lambda: (out / "checkpoints" / "last.ckpt").exists() and steps_done(out) >= 30)
    proc.kill()
    proc.communicate(timeout=60)
    assert json.loads((out / "summary.json").read_text())["status"] == "running"  # it never knew
    relaunch = cli("ablate-train", *args, f"hydra.run.dir={out}", timeout=600)
    assert relaunch.returncode == 0, relaunch.stderr[-2000:]
    assert "resuming its unfinished run" in relaunch.stdout
    whole = run(compose_cfg(*args), tmp_path / "whole")
    final = json.loads((out / "summary.json").read_text())
    assert final["status"] == "completed" and final["resumed"] == 1
    assert final["val_loss_final"] == whole["val_loss_final"]
    assert curves(out) == curves(tmp_path / "whole")


@pytest.mark.slow
def test_an_exception_in_a_step_is_recorded_as_failed(tmp_path):
    plugin = tmp_path / "faulty.py"
    plugin.write_text(textwrap.dedent('''
        from torch import nn
        from ablate.components.slots import activation

        @activation.register("faulty")
        class Faulty(nn.ReLU):
            """ReLU that raises on its 30th training call."""

            calls = 0

            def forward(self, x):
                if self.training:
                    Faulty.calls += 1
                    if Faulty.calls == 30:
                        raise RuntimeError("injected failure in a training step")
                return super().forward(x)
    '''))
    out = tmp_path / "run"
    result = cli("ablate-train", "model/activation=faulty", *RUN, f"hydra.run.dir={out}", timeout=300,
                 env={"ABLATE_IMPORTS": str(plugin)})
    assert result.returncode != 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "failed"
    assert summary["error"] == "RuntimeError: injected failure in a training step"


class Unpicklable:
    def __reduce__(self):
        raise RuntimeError("the process died here, halfway through writing")


def test_a_failed_checkpoint_write_leaves_the_previous_one_whole(tmp_path):
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.arange(1000.0)}, "global_step": 10}, path)
    with pytest.raises(RuntimeError, match="halfway"):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(1000)}, "later": Unpicklable()}, path)
    assert load_checkpoint(path)["global_step"] == 10
    assert torch.equal(load_checkpoint(path)["state_dict"]["w"], torch.arange(1000.0))
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left behind


@pytest.mark.slow
def test_sigkill_during_checkpoint_writes_never_leaves_a_broken_checkpoint(tmp_path):
    """A process writing large checkpoints in a loop is killed at arbitrary moments, five times."""
    writer = textwrap.dedent(f'''
        import torch
        from ablate.checkpoints import AtomicCheckpointIO
        io, i = AtomicCheckpointIO(), 0
        while True:
            i += 1
            w = torch.full((4_000_000,), float(i))
            io.save_checkpoint({{"state_dict": {{"w": w}}, "global_step": i}}, {str(tmp_path / "last.ckpt")!r})
    ''')
    for delay in (0.01, 0.05, 0.11, 0.17, 0.3):
        (tmp_path / "last.ckpt").unlink(missing_ok=True)
        proc = subprocess.Popen([sys.executable, "-c", writer])
        wait_for(lambda: (tmp_path / "last.ckpt").exists())
        time.sleep(delay)  # somewhere in the middle of a later write
        proc.kill()
        proc.wait()
        ckpt = load_checkpoint(tmp_path / "last.ckpt")  # raises if the file were half-written
        assert torch.all(ckpt["state_dict"]["w"] == ckpt["global_step"])  # one checkpoint, not a mix
        # a killed writer may leave its temporary file, never anything that looks like a checkpoint
        leftovers = {p.name for p in tmp_path.iterdir()} - {"last.ckpt"}
        assert all(n.startswith(".last.ckpt.") and n.endswith(".tmp") for n in leftovers), leftovers


def test_corrupted_and_truncated_checkpoints_are_refused_in_one_line(tmp_path):
    good = tmp_path / "good.ckpt"
    AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.ones(100_000)}, "global_step": 1}, good)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(os.urandom(4096))
    for path in (truncated, garbage):
        with pytest.raises(CheckpointError, match=rf"checkpoint {path} is corrupted or truncated") as info:
            load_checkpoint(path)
        assert "\n" not in str(info.value)
    not_ours = tmp_path / "weights.ckpt"
    torch.save({"w": torch.ones(3)}, not_ours)
    with pytest.raises(CheckpointError, match="is not an ablate training checkpoint"):
        load_checkpoint(not_ours)


@pytest.mark.slow
def test_init_from_a_checkpoint_of_another_architecture_or_vocabulary_is_refused(compose_cfg, tmp_path):
    from ablate.lit import LitGPT

    run(compose_cfg(*RUN, "trainer.max_steps=2", "trainer.val_check_interval=2"), tmp_path / "a")
    ckpt = tmp_path / "a" / "checkpoints" / "last.ckpt"
    saved = load_checkpoint(ckpt)["hyper_parameters"]
    post = {**saved["model"], "norm": {"name": "post"}, "init_from": str(ckpt)}
    with pytest.raises(CheckpointError, match=r"has model.norm=pre but this run has model.norm=post"):
        LitGPT(model=post, optim=saved["optim"], tokenizer=saved["tokenizer"])
    other_vocab = {"kind": "char", "chars": "abc"}
    with pytest.raises(CheckpointError, match="was trained with another vocabulary"):
        LitGPT(model={**saved["model"], "init_from": str(ckpt)}, optim=saved["optim"], tokenizer=other_vocab)
    # the same architecture loads, weights and all
    same = LitGPT(model={**saved["model"], "init_from": str(ckpt)}, optim=saved["optim"], tokenizer=saved["tokenizer"])
    state = load_checkpoint(ckpt)["state_dict"]
    assert torch.equal(same.model.lm_head.weight, state["model.lm_head.weight"])

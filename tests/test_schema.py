"""Every setting has a schema entry; wrong types, impossible values and impossible sizes stop a run in one line
(exit 2) before it trains; a second SIGTERM or Ctrl-C ends a run at once, recorded as interrupted."""

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
from conftest import cli, compose_config, one_line_error
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from ablate.config import check_overrides, conf_dir
from ablate.errors import ConfigError
from ablate.memory import GB, available_bytes, check_step_fits, step_bytes
from ablate.model import GPT, GPTConfig
from ablate.schema import GROUPS, RootSchema, check_config, unknown_keys

TINY = ["model.n_layer=1", "model.n_head=2", "model.n_embd=16", "model.block_size=16"]


def group_options() -> dict[str, list[str]]:
    """Every option of every config group outside the model, as Hydra lists them (``optim/optimizer`` too)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        groups = [g for g in loader.list_groups("") if g not in ("hydra", "model", "sweeps")]
        groups += [f"optim/{g}" for g in loader.list_groups("optim")]
        options = {g: loader.get_group_options(g) for g in groups}
    GlobalHydra.instance().clear()
    return options


def test_every_group_option_composes_to_settings_the_schema_knows():
    options = group_options()
    assert {"data", "optim", "trainer", "logger"} <= set(options) and options["data"]
    seen = 0
    for group, names in options.items():
        for name in names:
            cfg = OmegaConf.to_container(compose_config(f"{group}={name}"), resolve=False)
            root = {k: v for k, v in cfg.items() if k not in GROUPS and k != "model"}
            assert unknown_keys("root", root) == [], f"{group}={name}"
            for g in GROUPS:
                assert unknown_keys(g, cfg[g]) == [], f"{group}={name}: {g}"
            check_config(compose_config(f"{group}={name}"))  # and every shipped value passes its checks
            seen += 1
    assert seen >= 8


def test_a_setting_with_no_schema_entry_is_refused_naming_it():
    with pytest.raises(ConfigError, match=r"^trainer\.accumulate_grad_batchez is not a setting; trainer has: "):
        check_config(compose_config("+trainer.accumulate_grad_batchez=2"))
    assert unknown_keys("sample", {"prompt": "x", "temprature": 1}) == ["temprature"]
    assert unknown_keys("root", {"seed": 1, "sed": 2}) == ["sed"] and "seed" in RootSchema.__dataclass_fields__


@pytest.mark.parametrize(
    "override, message",
    [
        # wrong types: OmegaConf's check against the schema, said in one line
        ("seed=abc", "seed='abc' must be an integer"),
        ("data.batch_size=2.5", "data.batch_size=2.5 must be an integer"),
        ("data.batch_size='3'", "data.batch_size='3' must be an integer"),
        ("trainer.enable_progress_bar=yes", "trainer.enable_progress_bar='yes' must be true or false"),
        ("optim.betas=abc", "optim.betas='abc' must be a list of numbers"),
        ("trainer.val_check_interval=0.5", "trainer.val_check_interval=0.5 must be an integer"),
        ("sample.top_k=many", "sample.top_k='many' must be an integer or null"),
        # ranges
        ("optim.lr=-1", "optim.lr=-1 must be a positive number"),
        ("data.batch_size=0", "data.batch_size=0 must be a positive integer"),
        ("data.val_fraction=1.5", "data.val_fraction=1.5 must be in (0, 1)"),
        ("data.val_fraction=0", "data.val_fraction=0 must be in (0, 1)"),
        ("data.eval_batches=0", "data.eval_batches=0 must be a positive integer"),
        ("seed=-1", "seed=-1 must be in [0, 4294967295]"),
        ("threads=0", "threads=0 must be a positive integer or null"),
        ("trainer.max_steps=0", "trainer.max_steps=0 must be a positive integer (a run of no steps has no loss)"),
        ("trainer.val_check_interval=0", "trainer.val_check_interval=0 must be a positive integer (steps)"),
        ("trainer.check_val_every_n_epoch=1", "trainer.check_val_every_n_epoch=1 must be null"),
        ("trainer.precision=bf17", "trainer.precision='bf17' is not one of Lightning's: 32-true, bf16-mixed,"),
        ("trainer.accelerator=gpus", "trainer.accelerator='gpus': choose one of: auto, cpu, gpu, cuda, mps, tpu"),
        ("trainer.devices=0", "trainer.devices=0 must be a positive integer, -1 (all), auto, or a list"),
        ("trainer.gradient_clip_val=-1", "trainer.gradient_clip_val=-1 must be a number >= 0 or null"),
        ("optim.warmup_steps=-5", "optim.warmup_steps=-5 must be 0 (no warm-up) or more"),
        ("optim.eps=0", "optim.eps=0 must be a positive number"),
        ("optim.betas=[0.9]", "optim.betas=[0.9] must be two numbers in [0, 1)"),
        ("optim.weight_decay=-0.1", "optim.weight_decay=-0.1 must be a number >= 0"),
        ("logger.mode=loud", "logger.mode='loud': choose one of: auto, online, offline, disabled"),
        ("sample.temperature=0", "sample.temperature=0 must be a positive number"),
        ("sample.prompt=''", "sample.prompt='' must be at least one character"),
        ("sample.every=0", "sample.every=0 must be a positive number of steps or null (every evaluation)"),
        ("sweep.margin=0", "sweep.margin=0 must be a positive number of nats or null"),
        # relations
        ("optim.min_lr=0.01", "optim.min_lr=0.01 must not exceed optim.lr=0.001"),
        ("optim.decay_steps=0", "optim.decay_steps=0 must be a positive integer"),
        ("model.block_size=0", "data.block_size=0 must be a positive integer (data.block_size is ${model.block_size})"),
        # the recipe's variants: their registered defaults' types, then ranges
        (("optim/schedule=wsd", "optim.schedule.decay_fraction=abc"), "optim.schedule.decay_fraction='abc' must be a number"),
        (("optim/schedule=wsd", "optim.schedule.decay_fraction=1.5"), "optim.schedule.decay_fraction=1.5 must be in (0, 1]"),
        (("optim/schedule=wsd", "optim.schedule.decay_fraction=0"), "optim.schedule.decay_fraction=0 must be in (0, 1]"),
        (("optim/optimizer=muon", "optim.optimizer.momentum=1.0"), "optim.optimizer.momentum=1.0 must be in [0, 1)"),
        (("optim/optimizer=muon", "optim.optimizer.ns_steps=0"), "optim.optimizer.ns_steps=0 must be a positive integer"),
        (("optim/optimizer=muon", "optim.optimizer.ns_steps=2.5"), "optim.optimizer.ns_steps=2.5 must be an integer"),
        (("optim/optimizer=muon", "optim.optimizer.nesterov=3"), "optim.optimizer.nesterov=3 must be true or false"),
        (("optim/optimizer=muon", "optim.optimizer.adjust_lr_fn=keller"),
         "optim.optimizer.adjust_lr_fn='keller': choose one of: match_rms_adamw, original"),
    ],
)
def test_bad_settings_are_one_line_naming_the_key_and_the_value(override, message):
    with pytest.raises(ConfigError) as e:
        check_config(compose_config(*([override] if isinstance(override, str) else override)))
    assert str(e.value).startswith(message) and "\n" not in str(e.value), str(e.value)


def test_a_warm_up_longer_than_the_run_is_said_not_refused():
    assert check_config(compose_config("trainer.max_steps=50")) == [
        "optim.warmup_steps=100 is longer than the run (trainer.max_steps=50): the learning rate never reaches optim.lr"]
    assert check_config(compose_config("trainer.max_steps=50", "optim.warmup_steps=10")) == []


def test_each_value_of_a_sweep_is_checked_before_any_run():
    with pytest.raises(ConfigError, match=r"^optim\.lr=-0\.5 must be a positive number"):
        check_overrides(["-m", "optim.lr=1e-3,-0.5", "seed=1,2"])
    with pytest.raises(ConfigError, match=r"^data\.val_fraction=1\.5 must be in \(0, 1\)$"):
        check_overrides(["-m", "data.val_fraction=0.1,1.5"])
    with pytest.raises(ConfigError, match=r"^sweeps=search_lr: data\.batch_size=0 must be a positive integer"):
        check_overrides(["sweeps=search_lr", "data.batch_size=0"])


def test_the_memory_probe_leaves_the_random_state_and_the_models_mode_as_they_were():
    """The estimate runs the model once: with dropout on, a training-mode probe would draw random numbers (so a run
    would no longer reproduce its records) and a module counting its training calls would count one more."""
    cfg = compose_config("model.dropout=0.1")
    model = GPT(GPTConfig.from_dict(OmegaConf.to_container(cfg.model, resolve=True), vocab_size=65))
    calls = []
    model.transformer.h[0].mlp.register_forward_hook(lambda m, a, o: calls.append(m.training))
    state = torch.random.get_rng_state()
    assert step_bytes(model, 12, 64, "32-true")["activations"] > 0
    assert torch.equal(torch.random.get_rng_state(), state)
    assert calls == [False] and model.training and model.transformer.h[0].mlp.training


def test_a_step_that_cannot_fit_is_refused_with_the_estimate_and_what_is_available():
    cfg = compose_config()  # the default model (4 x 128) on tiny Shakespeare's 65 characters
    model = GPT(GPTConfig.from_dict(OmegaConf.to_container(cfg.model, resolve=True), vocab_size=65))
    trainer = OmegaConf.create({"accelerator": "cpu", "devices": 1, "precision": "32-true"})
    parts = step_bytes(model, batch_size=12, block_size=100_000, precision="32-true")
    # activations grow with the batch's tokens: 12 x 100,000 tokens of 4 layers x 128 channels is tens of GB
    assert parts["activations"] > 20 * GB and parts["activations"] == 100_000 / 64 * step_bytes(
        model, batch_size=12, block_size=64, precision="32-true")["activations"]
    assert step_bytes(model, 12, 64, "bf16-mixed")["activations"] * 2 == step_bytes(model, 12, 64, "32-true")["activations"]
    available, _ = available_bytes("cpu")
    assert 0 < available < 2**50
    batch = int(4 * available / parts["activations"] * 12) + 12  # four times what is free
    with pytest.raises(ConfigError) as e:
        check_step_fits(model, trainer, batch, 100_000)
    message = str(e.value)
    assert message.startswith("one training step needs about ") and "GB is available (" in message, message
    assert f"data.batch_size={batch}" in message and "\n" not in message
    assert check_step_fits(model, trainer, 12, 64)["activations"] < GB  # the default size fits
    assert check_step_fits(model, OmegaConf.create({"strategy": "ddp", "devices": -1}), batch, 100_000) is None


@pytest.mark.slow
def test_ablate_train_refuses_before_writing_anything(tmp_path):
    out = tmp_path / "run"
    for args, expected in [
        (["seed=abc"], "error: seed='abc' must be an integer"),
        (["-m", "optim.lr=1e-3,-1"], "error: optim.lr=-1 must be a positive number"),
    ]:
        result = cli("ablate-train", *args, f"hydra.run.dir={out}", f"hydra.sweep.dir={out}", cwd=tmp_path, timeout=300)
        assert one_line_error(result) == expected
        assert not any(out.rglob("*")), list(out.rglob("*"))  # no .hydra, no record


@pytest.mark.slow
def test_ablate_train_refuses_a_block_size_that_cannot_fit(tmp_path):
    result = cli("ablate-train", "model.block_size=100000", "logger.mode=disabled", f"hydra.run.dir={tmp_path}",
                 cwd=tmp_path, timeout=300)
    assert one_line_error(result).startswith("error: one training step needs about "), result.stderr[-2000:]
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "failed"


# A run whose step 2 sleeps (a step that cannot finish soon), started in its own process.
SLEEPY = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {tests!r})
    from conftest import cli, compose_config, one_line_error
    from lightning.pytorch.callbacks import Callback
    from ablate.train import run

    class Sleepy(Callback):
        def on_train_batch_start(self, trainer, *args):
            if trainer.global_step == 2:
                open({marker!r}, "w").close()
                time.sleep(600)

    cfg = compose_config({tiny}, "trainer.max_steps=10", "trainer.val_check_interval=5", "logger.mode=disabled",
                         "trainer.enable_progress_bar=false", "data.eval_batches=1", "sample.max_new_tokens=2",
                         "data.val_fraction=0.01", "optim.warmup_steps=0")
    run(cfg, {out!r}, callbacks=[Sleepy()])
""")


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_second_signal_ends_a_stuck_step_at_once(tmp_path, signum):
    marker, out = tmp_path / "sleeping", tmp_path / "run"
    script = SLEEPY.format(tests=str(Path(__file__).parent), marker=str(marker), out=str(out),
                           tiny=", ".join(repr(a) for a in TINY))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.time() + 240
        while not marker.exists():
            assert proc.poll() is None and time.time() < deadline, proc.communicate()[1][-2000:]
            time.sleep(0.2)
        proc.send_signal(signum)  # the first: a stop at the next step boundary, which this step never reaches
        time.sleep(1.0)
        assert proc.poll() is None
        sent = time.time()
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert time.time() - sent < 10, time.time() - sent
    assert proc.returncode == 128 + signum, stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "interrupted", summary
    assert summary["error"].startswith(f"a second {signal.Signals(signum).name} ended the run at once at step 2")

"""The console scripts as a user runs them: real subprocesses, real exit codes, one-line errors."""

import json
import subprocess
import sys
import textwrap

import pytest
from conftest import cli, one_line_error

pytestmark = pytest.mark.slow

QUICK = [
    "trainer.max_steps=4", "trainer.val_check_interval=2", "trainer.enable_progress_bar=false",
    "data.eval_batches=1", "sample.max_new_tokens=4", "logger.mode=offline",
    "data.val_fraction=0.01",  # a short final evaluation over the whole (1%) validation split
]


@pytest.mark.parametrize(
    "args, expected",
    [
        (["model/activation=swish"], "error: unknown model/activation='swish'; choose one of: gelu, gelu_tanh, relu"),
        (["model=gpt3"], "error: unknown model='gpt3'; choose one of: gpt2, modern, seed"),
        (["-m", "model/norm=pre,postt"], "error: unknown model/norm='postt'; choose one of: parallel, post, pre"),
        (["model.n_layr=3"], "error: unknown key model.n_layr (did you mean model.n_layer?); model has: "),
        (["model.n_embd=130"], "error: model.n_embd=130 is not divisible by model.n_head=4"),
        (["model.n_layer=0"], "error: model.n_layer=0 must be a positive integer"),
        (["data.path=/nonexistent/corpus.txt"], "error: data.path=/nonexistent/corpus.txt: no such file"),
        (["data.tokenizer=bytes"], "error: data.tokenizer='bytes' is unknown; choose one of: char, gpt2"),
        (["model.dropout=lots"], "error: model.dropout='lots' must be a number in [0, 1)"),
        (["hydra.run.dir=/proc/ablate"], "error: output folder /proc/ablate cannot be written (No such file"),
        # quoted, as Lightning's DDP relaunch passes it: the folder is the one Hydra reads, not '"/proc' in the cwd
        (['hydra.run.dir="/proc/ablate"'], "error: output folder /proc/ablate cannot be written (No such file"),
        (["resume=/nonexistent/run"], "error: resume=/nonexistent/run: not a run folder (no .hydra/config.yaml)"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, expected, tmp_path):
    result = cli("ablate-train", *args, f"hydra.run.dir={tmp_path}", cwd=tmp_path)
    assert one_line_error(result).startswith(expected)


def test_hydras_exclusive_flags_together_are_one_line(tmp_path):
    result = cli("ablate-train", "-m", "--cfg", "job", "seed=1,2", f"hydra.sweep.dir={tmp_path}", cwd=tmp_path)
    assert one_line_error(result) == (
        "error: Only one of --run, --multirun, --cfg, --info and --shell_completion can be specified")


@pytest.mark.parametrize(
    "args, expected",
    [
        (["ablate-bench", "--size", "foo"],
         "error: --size 'foo' is unknown; choose from: quick, cpu-small, cpu-large, gpt2-small (see ablate-bench --help)"),
        (["ablate-report", "--bogus"], "error: unrecognized arguments: --bogus (see ablate-report --help)"),
        (["ablate-sample", "run", "--temperature", "0"],
         "error: --temperature=0.0 must be positive (see ablate-sample --help)"),
    ],
)
def test_the_other_commands_bad_arguments_are_one_line_without_argparses_usage_block(args, expected, tmp_path):
    result = cli(*args, cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.strip() == expected, result.stderr


def test_non_utf8_data_file(tmp_path):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("Je suis allé au marché.\n".encode("latin-1") * 100)
    line = one_line_error(cli("ablate-train", f"data.path={bad}", f"hydra.run.dir={tmp_path}", cwd=tmp_path))
    assert "is not UTF-8 (byte 0xe9 at offset 11)" in line


def test_a_variant_from_the_users_own_file_trains_through_ablate_train(tmp_path):
    """Register an activation in a module of one's own (not the package) and train with it."""
    plugin = tmp_path / "my_variants.py"
    plugin.write_text(textwrap.dedent('''
        import torch
        from torch import nn
        from ablate.components.slots import activation

        @activation.register("swish_beta", beta=1.5)
        class SwishBeta(nn.Module):
            """x * sigmoid(beta * x)."""

            def __init__(self, beta: float) -> None:
                super().__init__()
                self.beta = beta

            def forward(self, x):
                return x * torch.sigmoid(self.beta * x)
    '''))
    env = {"ABLATE_IMPORTS": str(plugin)}
    listing = cli("ablate-variants", env=env)
    assert "swish_beta" in listing.stdout and "x * sigmoid(beta * x). (beta=1.5)" in listing.stdout

    out = tmp_path / "run"
    result = cli(
        "ablate-train", "model/activation=swish_beta", "model.activation.beta=2.0", *QUICK,
        f"hydra.run.dir={out}", env=env, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["choices"]["activation"] == "swish_beta"
    assert summary["name"] == "gpt2-activation=swish_beta-s1337"
    assert "Outputs in" in result.stdout and "wandb sync" in result.stdout
    assert "anonymous setting" not in result.stderr  # Lightning's anonymous=None is not passed on to wandb
    # a checkpoint says what it holds: no "`weights_only` was not set" line at every save
    assert (out / "checkpoints" / "last.ckpt").is_file()
    assert "weights_only" not in result.stdout + result.stderr + (out / "train.log").read_text()

    # ablate-sample rebuilds the model with the user's variant (beta from the checkpoint) and samples
    sample = cli("ablate-sample", str(out), "--max-new-tokens", "20", "--prompt", "ROMEO:", env=env)
    assert sample.returncode == 0, sample.stderr[-2000:]
    assert sample.stdout.startswith("ROMEO:") and len(sample.stdout.rstrip("\n")) == len("ROMEO:") + 20


def test_ablate_sample_refuses_a_missing_or_corrupt_checkpoint(tmp_path):
    assert "no such file" in one_line_error(cli("ablate-sample", str(tmp_path / "none.ckpt")))
    corrupt = tmp_path / "bad.ckpt"
    corrupt.write_bytes(b"not a checkpoint")
    assert f"checkpoint {corrupt} cannot be loaded" in one_line_error(cli("ablate-sample", str(corrupt)))


def test_help_lists_every_slot(tmp_path):
    result = cli("ablate-train", "--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "model/activation: gelu, gelu_tanh, relu" in result.stdout
    assert "model/qkv: fused, per_head_shared" in result.stdout
    assert "model: gpt2, modern, seed" in result.stdout


def test_python_dash_m_works_too(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "ablate.train", "model/norm=sideways"], capture_output=True, text=True, timeout=120
    )
    assert one_line_error(result) == "error: unknown model/norm='sideways'; choose one of: parallel, post, pre"

"""``ablate-bench --nanogpt``: nanoGPT's data made as its ``prepare.py`` makes it, its output read as it prints it,
the runs alternated and the report assembled; and, given a real nanoGPT checkout (``ABLATE_NANOGPT=path``), the
whole comparison end to end at a tiny size. CI has no checkout (nanoGPT's code is not part of this project), so
that test is skipped there; nothing stands in for nanoGPT."""

import csv
import json
import os
import pickle
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY, cli, one_line_error
from scipy import stats

from ablate.bench.markdown import nanogpt_markdown
from ablate.bench.nanogpt import (
    alternate,
    check_checkout,
    medians,
    paired_ratio,
    parse_ablate,
    parse_nanogpt,
    prepare_shakespeare_char,
)
from ablate.bench.nanogpt_steps import ABLATE_ARMS, activation_modules, time_activations, time_steps
from ablate.components.slots import activation as activation_slot
from ablate.data import default_text_path
from ablate.errors import AblateError

FIXTURES = Path(__file__).parent / "fixtures" / "nanogpt"
CHECKOUT = os.environ.get("ABLATE_NANOGPT")
needs_checkout = pytest.mark.skipif(not CHECKOUT, reason="set ABLATE_NANOGPT to a nanoGPT checkout to run nanoGPT")


def nanogpts_prepare(input_txt: Path, out: Path) -> None:
    """nanoGPT's data/shakespeare_char/prepare.py (commit 3adf61e) as published, step by step, minus the download."""
    with open(input_txt) as f:
        data = f.read()
    chars = sorted(list(set(data)))
    vocab_size = len(chars)
    stoi = {ch: i for i, ch in enumerate(chars)}
    itos = {i: ch for i, ch in enumerate(chars)}
    n = len(data)
    train_data, val_data = data[:int(n * 0.9)], data[int(n * 0.9):]
    train_ids = np.array([stoi[c] for c in train_data], dtype=np.uint16)
    val_ids = np.array([stoi[c] for c in val_data], dtype=np.uint16)
    train_ids.tofile(out / "train.bin")
    val_ids.tofile(out / "val.bin")
    meta = {"vocab_size": vocab_size, "itos": itos, "stoi": stoi}
    with open(out / "meta.pkl", "wb") as f:
        pickle.dump(meta, f)


FILES = ("train.bin", "val.bin", "meta.pkl")


def test_the_data_is_byte_for_byte_what_nanogpts_prepare_makes(tmp_path):
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    theirs.mkdir()
    sizes = prepare_shakespeare_char(default_text_path().read_text(encoding="utf-8"), ours)
    nanogpts_prepare(default_text_path(), theirs)
    for name in FILES:
        assert (ours / name).read_bytes() == (theirs / name).read_bytes(), name
    # the numbers prepare.py states for tiny Shakespeare in its closing comment
    assert sizes == {"vocab_size": 65, "train_tokens": 1003854, "val_tokens": 111540}
    assert (ours / "train.bin").stat().st_size == 2 * 1003854


@needs_checkout
def test_the_data_is_byte_for_byte_what_the_checkouts_own_prepare_makes(tmp_path):
    """The checkout's prepare.py, run on ablate's text (it downloads only when input.txt is missing)."""
    folder = tmp_path / "shakespeare_char"
    folder.mkdir()
    shutil.copy(Path(CHECKOUT) / "data" / "shakespeare_char" / "prepare.py", folder)
    shutil.copy(default_text_path(), folder / "input.txt")
    subprocess.run([sys.executable, "prepare.py"], cwd=folder, check=True, capture_output=True)
    prepare_shakespeare_char(default_text_path().read_text(encoding="utf-8"), tmp_path / "ours")
    for name in FILES:
        assert (tmp_path / "ours" / name).read_bytes() == (folder / name).read_bytes(), name


def test_nanogpts_own_output_is_read():
    """Lines a real nanoGPT run printed (tests/fixtures/nanogpt/README.md): steps 0-3, evaluations at 0 and 2."""
    parsed = parse_nanogpt((FIXTURES / "train_stdout.txt").read_text())
    step = statistics.median([2.348, 2.31782])  # iterations 1 and 3: neither evaluated
    assert parsed == pytest.approx({
        "steps": 4, "time_per_step_s": step,
        "eval_time_s": (4.3765 - step) + (4.31809 - step), "step0_eval_s": 4.3765 - step,
        "evals": 2, "evals_timed": 2,
        "train_loss_last_eval": 4.1048, "val_loss_last_eval": 4.1346, "last_eval_step": 2,
    })


def test_output_that_is_not_nanogpts_is_refused():
    with pytest.raises(AblateError, match="is it nanoGPT's train.py"):
        parse_nanogpt("Epoch 1: loss 3.2\nstep 0: train loss 4.1, val loss 4.2\n")


def test_a_folder_that_is_not_a_checkout_is_refused_naming_what_is_missing(tmp_path):
    (tmp_path / "train.py").write_text("")
    with pytest.raises(AblateError, match=r"not a nanoGPT checkout \(no model.py, configurator.py, "
                                          r"config/train_shakespeare_char.py\)"):
        check_checkout(tmp_path)


def test_the_sides_alternate_and_their_medians_are_reported():
    order = []

    def side(name, values):
        it = iter(values)
        return lambda: order.append(name) or {"wall_s": next(it), "label": f"{name} {len(order)}", "eval_time_s": None}

    runs = alternate({"nanogpt": side("nanogpt", [3.0, 1.0, 2.0]), "ablate": side("ablate", [10.0, 30.0, 20.0])}, 3)
    assert order == ["nanogpt", "ablate"] * 3
    assert [r["label"] for r in runs["ablate"]] == ["ablate 2", "ablate 4", "ablate 6"]
    assert medians(runs["nanogpt"]) == {"wall_s": 2.0, "label": "nanogpt 1", "eval_time_s": None}
    assert medians(runs["ablate"])["wall_s"] == 20.0
    # two runs: the mean of the two; a count the same in both stays an integer
    two = medians([{"wall_s": 1.0, "steps": 2001}, {"wall_s": 2.0, "steps": 2001}])
    assert two == {"wall_s": 1.5, "steps": 2001} and isinstance(two["steps"], int)


def test_each_pairs_ratio_and_their_geometric_mean_with_its_interval_are_reported():
    nanogpt = [{"wall_s": 100.0, "time_per_step_s": 0.05}, {"wall_s": 110.0, "time_per_step_s": 0.05},
               {"wall_s": 120.0, "time_per_step_s": 0.04}]
    ablate = [{"wall_s": 110.0, "time_per_step_s": 0.06}, {"wall_s": 132.0, "time_per_step_s": None},
              {"wall_s": 120.0, "time_per_step_s": 0.05}]
    wall = paired_ratio(nanogpt, ablate, "wall_s")
    assert wall["ratios"] == pytest.approx([1.1, 1.2, 1.0])
    assert wall["geomean"] == pytest.approx(1.32 ** (1 / 3))
    logs = np.log([1.1, 1.2, 1.0])
    half = stats.t.ppf(0.975, 2) * logs.std(ddof=1) / np.sqrt(3)
    assert wall["ci"] == pytest.approx([np.exp(logs.mean() - half), np.exp(logs.mean() + half)])
    step = paired_ratio(nanogpt, ablate, "time_per_step_s")  # the pair without the number is left out
    assert step["ratios"] == pytest.approx([1.2, 1.25]) and step["geomean"] == pytest.approx(1.5 ** 0.5)
    one = paired_ratio(nanogpt[:1], ablate[:1], "wall_s")
    assert one["ratios"] == pytest.approx([1.1]) and one["ci"] is None
    assert paired_ratio(nanogpt, ablate, "eval_time_s") == {"ratios": [], "geomean": None, "ci": None}


@pytest.mark.slow
def test_an_ablate_runs_record_gives_its_numbers(compose_cfg, tmp_path):
    from ablate.train import run

    cfg = compose_cfg(*TINY, "trainer.max_steps=20", "trainer.val_check_interval=10", "trainer.log_every_n_steps=5",
                      "trainer.enable_progress_bar=false", "data.eval_batches=2", "sample.max_new_tokens=4",
                      "data.val_fraction=0.01", "logger.mode=disabled")
    summary = run(cfg, tmp_path)
    parsed = parse_ablate(tmp_path)
    rows = [r for r in csv.DictReader(open(tmp_path / "metrics.csv")) if r.get("train/time")]
    clock = [(int(r["step"]), float(r["train/time"])) for r in rows]
    assert [s for s, _ in clock] == [4, 9, 14, 19]
    assert parsed["time_per_step_s"] == pytest.approx(statistics.median(
        (t1 - t0) / 5 for (_, t0), (_, t1) in zip(clock, clock[1:])))
    assert parsed["steps"] == 20 and parsed["status"] == "completed"
    for ours, theirs in (("time_to_first_step_s", "time_to_first_step_s"), ("eval_time_s", "eval_time_s"),
                         ("final_eval_time_s", "final_eval_time_s"), ("val_loss_last_eval", "val_loss_last"),
                         ("val_loss_whole_split", "val_loss_final")):
        assert parsed[ours] == summary[theirs] and summary[theirs] > 0, ours
    assert {f"startup_{name}_s": s for name, s in summary["time_to_first_step_parts_s"].items()} == \
        {k: v for k, v in parsed.items() if k.startswith("startup_")} and len(summary["time_to_first_step_parts_s"]) == 6


def test_the_report_states_each_sides_numbers():
    nanogpt = {"wall_s": 60.0, "time_to_first_step_s": 5.0, **parse_nanogpt((FIXTURES / "train_stdout.txt").read_text())}
    ablate = {"wall_s": 90.0, "steps": 4, "time_per_step_s": 0.5, "time_to_first_step_s": 4.0, "eval_time_s": 1.5,
              "final_eval_time_s": 2.5, "val_loss_last_eval": 3.9, "val_loss_whole_split": 3.8, "status": "completed",
              "startup_launch_and_config_s": 2.5, "startup_wandb_s": 0.75}
    report = {
        "command": "ablate-bench --nanogpt /n", "machine": {"cpu": "x", "cores": 2, "torch_threads": 2, "gpu": None},
        "versions": {"torch": "2"}, "load_avg_1min_start": 0.1, "others_cpu_use_start": 0.0, "warnings": [],
        "nanogpt": {"path": "/n", "commit": "abc"}, "pairs": 2,
        "data": {"vocab_size": 65, "train_tokens": 1003854, "val_tokens": 111540},
        "runs": {"nanogpt": [nanogpt, nanogpt], "ablate": [ablate, ablate]},
        "median": {"nanogpt": nanogpt, "ablate": ablate},
        "commands": {"nanogpt": "cd /n && python train.py ...", "ablate": "ablate-train"},
        "steps": {"rounds": 6, "steps": 25, "overrides": {"ablate gpt2": [], "ablate gpt2, no biases": ["model.bias=false"]},
                  "median_step_s": {"nanoGPT model.py": 0.05, "ablate gpt2": 0.06, "ablate gpt2, no biases": 0.055}},
    }
    text = nanogpt_markdown(report)
    assert "| wall time (s) | 60.00 | 90.00 | 1.50× |" in text
    assert "| time to the first training step (s) | 5.00 (its step-0 evaluation ≈ 2.04) | 4.00 | 0.80× |" in text
    assert "| time per training step (ms) | 2332.9 | 500.0 | 0.21× |" in text
    assert "| final evaluation (s) | none | 2.50 (the whole validation split) |  |" in text
    assert "| final validation loss | 4.1346 (train 4.1048), step 2 | 3.9000 (whole split 3.8000) |  |" in text
    # the steps alone, each arm against nanoGPT's model
    assert "6 timed rounds of 25 steps each" in text
    assert "| nanoGPT model.py | its `GPT` (`bias=False`, exact GELU) and `configure_optimizers` | 50.0 | 1.00× |" in text
    assert "| ablate gpt2 | `ablate-train`'s default | 60.0 | 1.20× |" in text
    assert "| ablate gpt2, no biases | `model.bias=false` | 55.0 | 1.10× |" in text
    assert "Training steps alone" not in nanogpt_markdown({**report, "steps": None})  # --step-rounds 0
    assert "Each activation variant alone" not in text  # a report from before the activations were timed
    activation = {"shape": [768, 512], "n_layer": 4, "median_s": {
        "gelu_tanh": {"forward": 0.0007, "backward": 0.0008}, "gelu": {"forward": 0.0002, "backward": 0.0003}}}
    text = nanogpt_markdown({**report, "steps": {**report["steps"], "activation": activation}})
    assert "one layer's MLP activations (768 × 512: the batch's tokens by 4·n_embd)" in text
    assert "| `gelu_tanh` | 0.700 | 0.800 | 6.00 | +4.00 |" in text  # 4 layers × (0.7 + 0.8) ms, less 4 × 0.5
    assert "| `gelu` | 0.200 | 0.300 | 2.00 | +0.00 |" in text
    runs = [line for line in text.splitlines() if re.match(r"\| (nanogpt|ablate) \d+ \|", line)]
    assert runs == ["| nanogpt 1 | 60.00 | 5.00 | 2332.9 | 4.03 | 4.1346 |", "| ablate 1 | 90.00 | 4.00 | 500.0 | 1.50 | 3.9000 |",
                    "| nanogpt 2 | 60.00 | 5.00 | 2332.9 | 4.03 | 4.1346 |", "| ablate 2 | 90.00 | 4.00 | 500.0 | 1.50 | 3.9000 |"]
    assert "1,003,854 training and 111,540 validation tokens" in text
    assert "Pair by pair" not in text  # a report from before each pair's ratio was reported
    paired = {"wall_s": {"ratios": [1.1, 1.2, 1.0], "geomean": 1.0969, "ci": [0.8, 1.5]},
              "time_to_first_step_s": {"ratios": [], "geomean": None, "ci": None},
              "time_per_step_s": {"ratios": [1.25], "geomean": 1.25, "ci": None}}
    assert "log ratios): wall time 1.10×, 1.20×, 1.00× (geometric mean 1.10×, 95% interval 0.80× to 1.50×); " \
           "time per step 1.25×.\n" in nanogpt_markdown({**report, "paired": paired})
    # the target, ablate no slower, read from the wall-time interval
    target = "The target, ablate's wall time at most nanoGPT's, at 95% confidence: "

    def verdict(ci):
        said = [line for line in nanogpt_markdown({**report, "paired": {**paired, "wall_s": {
            **paired["wall_s"], "ci": ci}}}).splitlines() if line.startswith(target)]
        return said[0].removeprefix(target).split(":")[0] if said else None

    assert verdict([0.8, 1.5]) == "**not told apart** with 3 pairs"
    assert verdict([1.01, 1.5]) == "**not met**" and verdict([0.9, 1.0]) == "**met**"
    assert verdict(None) is None and target not in text  # one pair, or a report from before
    assert "ablate's time to the first step by phase (medians, its record's `time_to_first_step_parts_s`): " \
           "launch and config 2.50 s, wandb 0.75 s." in text


def test_the_step_timing_gives_every_arm_the_same_batches_in_turns_after_an_untimed_round():
    calls = []

    def arm(name):
        return lambda x, y: calls.append((name, x.sum().item(), y.sum().item(), x.shape, y.shape))

    medians = time_steps({"a": arm("a"), "b": arm("b")}, rounds=2, steps=3)
    assert set(medians) == {"a", "b"} and all(t >= 0 for t in medians.values())
    assert [name for name, *_ in calls] == ["a"] * 3 + ["b"] * 3 + ["a"] * 3 + ["b"] * 3 + ["a"] * 3 + ["b"] * 3
    batches = [c[1:] for c in calls if c[0] == "a"]
    assert batches == [c[1:] for c in calls if c[0] == "b"] and batches[:3] == batches[3:6] == batches[6:]
    assert batches[0][2:] == ((12, 64), (12, 64))  # inputs and targets at ablate's default batch and block


class _Recording(torch.nn.Module):
    """An activation that records the input of each forward and the gradient of each backward it is given."""

    def __init__(self, name, calls):
        super().__init__()
        self.name, self.calls = name, calls

    def forward(self, x):
        self.calls.append((self.name, "forward", x.requires_grad, x.shape, x.sum().item()))
        y = x * 2
        y.register_hook(lambda g: self.calls.append((self.name, "backward", g.shape, g.sum().item())))
        return y


def test_the_activations_are_timed_forward_and_backward_on_the_same_tensors_in_turns():
    calls = []
    medians = time_activations({"a": _Recording("a", calls), "b": _Recording("b", calls)}, rounds=2, steps=2)
    assert set(medians) == {"a", "b"} and all(set(t) == {"forward", "backward"} for t in medians.values())
    assert all(s >= 0 for t in medians.values() for s in t.values())
    # untimed round, then 2 timed ones; each call a forward then its backward
    assert [(name, kind) for name, kind, *_ in calls] == [("a", "forward"), ("a", "backward")] * 2 + \
        [("b", "forward"), ("b", "backward")] * 2 + ([("a", "forward"), ("a", "backward")] * 2 +
                                                       [("b", "forward"), ("b", "backward")] * 2) * 2
    forwards = {c[1:] for c in calls if c[1] == "forward"}
    backwards = {c[1:] for c in calls if c[1] == "backward"}
    assert len(forwards) == 1 and forwards.pop()[1:3] == (True, (768, 512))  # one input: a leaf at the MLP's shape
    assert len(backwards) == 1 and backwards.pop()[1] == (768, 512)  # one output gradient


def test_the_timed_activations_are_the_registered_variants_as_the_mlp_builds_them():
    modules = activation_modules()
    assert set(modules) == set(activation_slot.names()) >= {"gelu_tanh", "gelu", "relu"}
    x = torch.linspace(-3, 3, 7)
    assert torch.equal(modules["gelu_tanh"](x), torch.nn.functional.gelu(x, approximate="tanh"))
    assert torch.equal(modules["gelu"](x), torch.nn.functional.gelu(x))


@pytest.mark.slow
@needs_checkout
def test_the_whole_comparison_runs_against_a_real_checkout(tmp_path):
    """Tiny on both sides (4 steps, evaluations every 2): the driver, not a measurement."""
    checkout = Path(CHECKOUT)
    before = sorted(p.relative_to(checkout) for p in checkout.rglob("*"))
    tiny_nanogpt = ["--max_iters=3", "--lr_decay_iters=3", "--eval_interval=2", "--eval_iters=2", "--log_interval=1"]
    tiny_ablate = ["trainer.max_steps=4", "trainer.val_check_interval=2", "trainer.log_every_n_steps=1",
                   "data.eval_batches=2", "sample.max_new_tokens=4", "data.val_fraction=0.01", "logger.mode=disabled"]
    args = ["--nanogpt", str(checkout), "--out", str(tmp_path), "--step-rounds=1",
            *(f"--nanogpt-arg={a}" for a in tiny_nanogpt),
            *(f"--ablate-arg={a}" for a in tiny_ablate)]
    result = subprocess.run([str(Path(sys.executable).with_name("ablate-bench")), *args], capture_output=True,
                            text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "nanogpt.json").read_text())
    assert report["command"] == " ".join(["ablate-bench", *args])
    for side in ("nanogpt", "ablate"):
        assert len(report["runs"][side]) == 2
        for r in report["runs"][side]:
            assert r["steps"] == 4  # nanoGPT: steps 0 to max_iters
            assert 0 < r["time_to_first_step_s"] < r["wall_s"]
            assert 0 < r["time_per_step_s"] < r["wall_s"] and r["eval_time_s"] > 0
    assert all(r["evals"] == 2 and r["last_eval_step"] == 2 for r in report["runs"]["nanogpt"])
    assert all(r["final_eval_time_s"] > 0 for r in report["runs"]["ablate"])
    assert report["data"] == {"vocab_size": 65, "train_tokens": 1003854, "val_tokens": 111540}
    for key, paired in report["paired"].items():  # each pair's ratio, in order
        assert paired["ratios"] == pytest.approx([a[key] / n[key] for n, a in zip(report["runs"]["nanogpt"], report["runs"]["ablate"])]), key
        assert len(paired["ci"]) == 2 and paired["ci"][0] <= paired["geomean"] <= paired["ci"][1]
    steps = report["steps"]["median_step_s"]  # the steps alone: nanoGPT's model and ablate's four arms, each timed
    assert list(steps) == ["nanoGPT model.py", *ABLATE_ARMS] and all(0 < t < 60 for t in steps.values())
    activations = report["steps"]["activation"]  # and every activation variant alone
    assert activations["shape"] == [768, 512] and set(activations["median_s"]) == set(activation_slot.names())
    assert all(0 < t < 60 for parts in activations["median_s"].values() for t in parts.values())
    assert f"`{report['command']}`" in (tmp_path / "nanogpt.md").read_text()
    assert sorted(p.relative_to(checkout) for p in checkout.rglob("*")) == before  # nothing written into it


@pytest.mark.parametrize("args, expected", [
    (["--nanogpt", "/no/such/folder"], "error: --nanogpt /no/such/folder: not a nanoGPT checkout (no train.py, "
                                       "model.py, configurator.py, config/train_shakespeare_char.py)"),
    (["--nanogpt", ".", "--pairs", "1"], "error: --pairs 1: must be at least 2"),
    (["--nanogpt", ".", "--step-rounds", "-1"], "error: --step-rounds -1: must be 0 (no step timing) or more"),
    (["--ablate-arg=trainer.max_steps=3"], "error: --nanogpt-arg and --ablate-arg go with --nanogpt PATH"),
    (["--nanogpt", ".", "--quick"], "error: --nanogpt runs whole processes at ablate's default size"),
])
def test_a_wrong_nanogpt_comparison_is_one_line(tmp_path, args, expected):
    assert one_line_error(cli("ablate-bench", *args, "--out", str(tmp_path), cwd=tmp_path)).startswith(expected)
    assert not list(tmp_path.iterdir())  # no report


def test_the_command_line_is_checked_before_anything_heavy_is_imported():
    """A wrong argument is one line at once: the benchmark's entry point loads no torch, Lightning, Hydra or
    Hugging Face until its arguments are checked (and a nanoGPT path until it is found to be a checkout)."""
    for args in (["--size", "nope"], ["--nanogpt", "/no/such/folder"], ["--pairs", "1"]):
        probe = (f"import sys\nfrom ablate.bench.cli import parse_args\ntry:\n    parse_args({args!r})\n"
                 f"except SystemExit as e:\n    assert e.code == 2\n"
                 f"print(sorted(m for m in ('torch', 'lightning', 'hydra', 'transformers') if m in sys.modules))")
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
        assert out.returncode == 0 and out.stdout.strip() == "[]", (args, out.stdout, out.stderr[-500:])

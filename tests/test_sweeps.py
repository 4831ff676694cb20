"""Named sweeps: they compose, survive failed runs, skip finished ones, group in wandb, and launch anywhere."""

import json
import os
import re
import subprocess
import textwrap
from pathlib import Path

import pytest
import yaml
from conftest import BIN, cli, compose_config, wandb_records, wandb_run
from omegaconf import OmegaConf

from ablate.config import check_overrides, preset_choices, sweeps_dir
from ablate.contract import Arm, find_arm
from ablate.model import GPTConfig
from ablate.registry import SLOTS

TINY_RUN = [
    "model.n_layer=2", "model.n_head=2", "model.n_embd=32",  # what a sweep does is the same at any size
    "trainer.max_steps=10", "trainer.val_check_interval=5", "trainer.log_every_n_steps=5",
    "trainer.enable_progress_bar=false", "data.eval_batches=1", "sample.max_new_tokens=4",
    "data.val_fraction=0.01",  # a short final evaluation over the whole (1%) validation split
]
NAMED = sorted(p.stem for p in sweeps_dir().glob("*.yaml") if p.stem != "none")


def test_the_promised_sweeps_ship():
    assert {"seed_to_gpt2", "factorial", "norm_lr_warmup", "search_lr"} <= set(NAMED)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMED)
def test_each_named_sweep_composes_as_a_multirun_with_its_group(name):
    cfg = compose_config(f"sweeps={name}", hydra=True)
    assert cfg.sweep.name == name
    assert cfg.logger.group == name  # every run of the sweep shares one wandb group
    assert cfg.hydra.mode.name == "MULTIRUN"
    assert cfg.hydra.sweep.dir == f"multirun/{name}"
    check_overrides([f"sweeps={name}"])  # every arm's overrides name real variants and keys


def _arm_config(overrides: list[str]) -> GPTConfig:
    cfg = compose_config(*overrides, hydra=True)
    return GPTConfig.from_dict(OmegaConf.to_container(cfg.model, resolve=True), vocab_size=65)


def test_seed_to_gpt2_changes_exactly_one_thing_per_arm():
    cfg = compose_config("sweeps=seed_to_gpt2", hydra=True)
    arms = OmegaConf.to_container(cfg.hydra.sweeper.arms)
    assert cfg.hydra.sweeper.params.seed == "1,2,3"
    gpt2, seed = _arm_config(arms["gpt2"]), _arm_config(arms["seed"])
    differing = [s for s in SLOTS if gpt2.choices()[s] != seed.choices()[s]]
    assert sorted(differing) == ["activation", "attn_scale", "init", "norm", "qkv"]
    # both directions of every differing slot, plus the output layer, plus the two presets
    assert len(arms) == 2 + 2 * (len(differing) + 1)
    for name, overrides in arms.items():
        if "+" not in name:
            continue
        parent, change = name.split("+")
        key, value = change.split("=")
        base, got = (gpt2 if parent == "gpt2" else seed), _arm_config(overrides)
        if key == "head":
            assert got.tie_embeddings == (value == "tied") and got.choices() == base.choices()
            continue
        expected = {**base.choices(), key: value}
        assert got.choices() == expected, name
        assert value == (seed if parent == "gpt2" else gpt2).choices()[key]  # the other preset's choice


# The design card: the seed's deviations from GPT-2 on five axes, each with the variants that answer it.
DESIGN_CARD = {
    "positional": ["learned", "none", "sinusoidal"], "norm": ["post", "pre"],
    "activation": ["gelu", "gelu_tanh", "relu"], "attn_scale": ["embed_size", "head_dim"],
    "layernorm": ["custom", "torch"],
}


def test_factorial_covers_the_five_axes_of_the_design_card():
    params = compose_config("sweeps=factorial", hydra=True).hydra.sweeper.params
    axes = {k.split("/")[1]: sorted(v.split(",")) for k, v in params.items() if k.startswith("model/")}
    assert axes == DESIGN_CARD
    for slot, values in axes.items():
        assert set(values) <= set(SLOTS[slot].names()), slot
    gpt2 = preset_choices("gpt2")
    assert all(gpt2[slot] in values for slot, values in axes.items())  # the rest of the model is gpt2's


def test_founding_is_the_resolution_v_half_fraction_of_the_five_axes_on_gpt2():
    """16 combinations, each with an even number of the seed's choices (I = ABCDE), the rest of the model GPT-2's;
    every pair of axes sees each of its four level combinations equally often, so main effects and two-way
    interactions are orthogonal; sinusoidal positions come at GPT-2's embedding scale."""
    import itertools

    cfg = compose_config("sweeps=founding", hydra=True)
    arms = OmegaConf.to_container(cfg.hydra.sweeper.arms)
    axes = {"positional": ("learned", "sinusoidal"), "norm": ("pre", "post"), "activation": ("gelu_tanh", "relu"),
            "attn_scale": ("head_dim", "embed_size"), "layernorm": ("torch", "custom")}
    gpt2 = _arm_config(arms["gpt2"])
    coded = []
    for name, overrides in arms.items():
        got = _arm_config(overrides)
        bits = tuple(axes[a].index(got.choices()[a]) for a in axes)
        assert sum(bits) % 2 == 0, name
        assert {k: v for k, v in got.choices().items() if k not in axes} == \
            {k: v for k, v in gpt2.choices().items() if k not in axes}
        assert name == "+".join(["gpt2", *(f"{a}={axes[a][1]}" for a, b in zip(axes, bits) if b)])
        if got.choices()["positional"] == "sinusoidal":
            assert got.positional["scale"] == pytest.approx(0.02 * 2**0.5, rel=1e-3)
        coded.append(bits)
    assert len(set(coded)) == 16
    for i, j in itertools.combinations(range(5), 2):
        pairs = [(c[i], c[j]) for c in coded]
        assert all(pairs.count(p) == 4 for p in itertools.product((0, 1), repeat=2))


def test_recipe_crosses_two_architectures_with_two_optimizers_and_two_schedules_each_at_its_own_lr():
    import itertools

    cfg = compose_config("sweeps=recipe", hydra=True)
    arms = OmegaConf.to_container(cfg.hydra.sweeper.arms)
    assert OmegaConf.to_container(cfg.hydra.sweeper.tune) == {"optim.lr": [1e-3, 2e-3, 4e-3, 8e-3]}
    seen = set()
    for name, overrides in arms.items():
        run_cfg = compose_config("sweeps=recipe", *overrides, "optim.lr=4e-3", hydra=True)
        combo = (run_cfg.model.preset, run_cfg.optim.optimizer.name, run_cfg.optim.schedule.name)
        expected = "+".join([combo[0], *(f"{k}={v}" for k, v, default in
                                         zip(("optimizer", "schedule"), combo[1:], ("adamw", "cosine")) if v != default)])
        assert name == expected
        assert run_cfg.optim.lr == 4e-3 and run_cfg.optim.min_lr == pytest.approx(4e-4)  # min_lr follows lr
        seen.add(combo)
    assert seen == set(itertools.product(("gpt2", "modern"), ("adamw", "muon"), ("cosine", "wsd")))
    # the architectures compared under each recipe: modern's own row (vs the baseline) under AdamW + cosine,
    # a declared comparison under each other recipe
    assert OmegaConf.to_container(cfg.sweep.compare) == {
        f"modern+{recipe}": f"gpt2+{recipe}" for recipe in ("optimizer=muon", "schedule=wsd", "optimizer=muon+schedule=wsd")}
    assert cfg.sweep.baseline == "gpt2" and arms["modern"] == ["model=modern"]


def test_a_mistyped_sweep_lists_the_valid_ones(tmp_path):
    result = cli("ablate-train", "sweeps=seed_to_gtp2", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: unknown sweeps='seed_to_gtp2'; choose one of: {', '.join(sorted([*NAMED, 'none']))}"


def test_a_bad_override_in_one_arm_is_one_line_before_anything_is_written(tmp_path):
    """Rotary's `base` exists in the rotary arms only: the first arm without it is named, nothing is launched."""
    result = cli("ablate-train", "sweeps=gpt2_to_modern", "model.positional.base=500.0", f"hydra.sweep.dir={tmp_path}/sweep",
                 cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: sweeps=gpt2_to_modern, arm 'gpt2': unknown key model.positional.base; model.positional has: name")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_baseline_that_is_no_arm_is_one_line_before_anything_is_written(tmp_path):
    result = cli("ablate-train", "sweeps=gpt2_to_modern", "sweep.baseline=gtp2", f"hydra.sweep.dir={tmp_path}/sweep", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    arms = ", ".join(compose_config("sweeps=gpt2_to_modern", hydra=True).hydra.sweeper.arms)
    assert result.stderr.strip() == f"error: sweep.baseline='gtp2' is not an arm of sweeps=gpt2_to_modern; choose one of: {arms}"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_declared_comparison_with_no_arm_is_one_line_before_anything_is_written(tmp_path):
    result = cli("ablate-train", "sweeps=gpt2_to_modern", "++sweep.compare={modern:gtp2}", f"hydra.sweep.dir={tmp_path}/sweep",
                 cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    arms = ", ".join(compose_config("sweeps=gpt2_to_modern", hydra=True).hydra.sweeper.arms)
    assert result.stderr.strip() == (
        f"error: sweep.compare.modern='gtp2' is not an arm of sweeps=gpt2_to_modern; choose one of: {arms}")
    assert list(tmp_path.iterdir()) == []


WITH_ARMS = [n for n in NAMED if (yaml.safe_load((sweeps_dir() / f"{n}.yaml").read_text()) or {})
             .get("hydra", {}).get("sweeper", {}).get("arms")]


@pytest.mark.parametrize("name", WITH_ARMS)
def test_each_named_sweep_with_named_arms_declares_one_of_them_as_its_baseline(name):
    cfg = compose_config(f"sweeps={name}", hydra=True)
    assert cfg.sweep.baseline in cfg.hydra.sweeper.arms
    for arm, reference in cfg.sweep.compare.items():  # and its declared comparisons name arms
        assert arm in cfg.hydra.sweeper.arms and reference in cfg.hydra.sweeper.arms


@pytest.mark.slow
@pytest.mark.parametrize("name", ["norm_lr_warmup", "factorial"])  # grid sweeps: the arms are labels of values
def test_a_grid_sweep_declares_a_baseline_among_the_arms_it_launches(tmp_path, name):
    """The arms a grid sweep launches (labels with Hydra's own spelling of the values, lr=0.0003) as the refusal
    lists them; the baseline the sweep file declares is one of them."""
    result = cli("ablate-train", f"sweeps={name}", "sweep.baseline=no-such-arm", f"hydra.sweep.dir={tmp_path}/sweep", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    arms = result.stderr.strip().split("; choose one of: ")[1].split(", ")
    declared = compose_config(f"sweeps={name}", hydra=True).sweep.baseline
    assert find_arm(declared, arms) is not None, (declared, arms[:5])


FAULTY = '''
from torch import nn
from ablate.components.slots import activation

@activation.register("faulty")
class Faulty(nn.ReLU):
    """ReLU that raises on its 6th training call (in every model built)."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        if self.training:
            self.calls += 1
            if self.calls == 6:
                raise RuntimeError("injected failure")
        return super().forward(x)
'''


@pytest.mark.slow
def test_a_sweep_survives_a_failed_run_groups_in_wandb_and_relaunch_skips_finished_runs(tmp_path):
    (tmp_path / "faulty.py").write_text(textwrap.dedent(FAULTY))
    env = {"ABLATE_IMPORTS": str(tmp_path / "faulty.py")}
    sweep = tmp_path / "sweep"
    args = ["-m", "model/activation=relu,faulty", "seed=1,2", "sweep.name=unit", "logger.mode=offline",
            *TINY_RUN, f"hydra.sweep.dir={sweep}"]
    first = cli("ablate-train", *args, env=env, cwd=tmp_path)
    assert first.returncode == 1  # the sweep reports its failure at the end...
    assert "Sweep done" in first.stderr + first.stdout and "2 completed, 2 failed" in first.stderr + first.stdout
    for seed in (1, 2):  # ...after every other run has finished
        ok = json.loads((sweep / "activation=relu" / f"seed={seed}" / "summary.json").read_text())
        assert ok["status"] == "completed" and ok["name"] == f"activation=relu-s{seed}" and ok["sweep"] == "unit"
        bad = json.loads((sweep / "activation=faulty" / f"seed={seed}" / "summary.json").read_text())
        assert bad["status"] == "failed" and bad["error"] == "RuntimeError: injected failure"
    plan = json.loads((sweep / "sweep.json").read_text())
    assert [(j["arm"], j["seed"]) for j in plan["jobs"]] == [
        ("activation=relu", 1), ("activation=relu", 2), ("activation=faulty", 1), ("activation=faulty", 2)]

    # wandb: one group for the sweep, one flat key per slot, the metrics, a short name per run
    records = wandb_records(sweep / "activation=relu" / "seed=1")
    run = next(r["run"] for r in records if r["type"] == "run")
    config, _, history, name = wandb_run(sweep / "activation=relu" / "seed=1")
    assert run["run_group"] == "unit"
    assert name == "activation=relu-s1"
    assert config["activation"] == "relu" and config["arm"] == "activation=relu"
    assert all(config[slot] for slot in SLOTS)
    assert "activation=relu" in run["tags"]
    val = [h["val/loss"] for h in history if "val/loss" in h]
    assert val == pytest.approx([ok_val for ok_val in _csv_column(sweep / "activation=relu" / "seed=1", "val/loss")])

    # the report of the partial sweep says what is missing and why
    report = cli("ablate-report", str(sweep), "--out", str(tmp_path / "report"), timeout=300)
    assert report.returncode == 0, report.stderr[-2000:]
    text = (tmp_path / "report" / "README.md").read_text()
    assert "activation=faulty" in text and "injected failure" in text

    # relaunch: finished runs are skipped untouched; failed ones resume from their last checkpoint
    # (step 5; the fault struck at step 6) and, the fault being transient, now finish
    stamp = (sweep / "activation=relu" / "seed=1" / "summary.json").stat().st_mtime_ns
    second = cli("ablate-train", *args, env=env, cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stdout.count("already completed, skipping") == 2
    assert second.stdout.count("resuming its unfinished run") == 2
    assert (sweep / "activation=relu" / "seed=1" / "summary.json").stat().st_mtime_ns == stamp
    for seed in (1, 2):
        redone = json.loads((sweep / "activation=faulty" / f"seed={seed}" / "summary.json").read_text())
        assert redone["status"] == "completed" and redone["resumed"] == 1 and redone["steps"] == 10


def _csv_column(run_dir: Path, key: str) -> list[float]:
    import csv

    return [float(r[key]) for r in csv.DictReader(open(run_dir / "metrics.csv")) if r.get(key)]


@pytest.mark.slow
def test_parallel_launcher_runs_two_at_a_time_with_the_same_results(tmp_path):
    args = ["-m", "model/norm=pre,post", "logger.mode=disabled", *TINY_RUN]
    serial = cli("ablate-train", *args, f"hydra.sweep.dir={tmp_path / 'serial'}", "threads=1", cwd=tmp_path)
    parallel = cli("ablate-train", *args, f"hydra.sweep.dir={tmp_path / 'parallel'}", "hydra/launcher=parallel", cwd=tmp_path)
    assert serial.returncode == 0 and parallel.returncode == 0, parallel.stderr[-3000:]
    assert "Joblib.Parallel(n_jobs=2" in parallel.stderr + parallel.stdout
    for arm in ("norm=pre", "norm=post"):
        a = json.loads((tmp_path / "serial" / arm / "seed=1337" / "summary.json").read_text())
        b = json.loads((tmp_path / "parallel" / arm / "seed=1337" / "summary.json").read_text())
        assert a["val_loss_final"] == b["val_loss_final"]  # one thread each in both: bit for bit


@pytest.mark.slow
def test_slurm_launcher_path_with_submitits_local_executor(tmp_path):
    """hydra/launcher=slurm's code path (Hydra's submitit launcher), each job its own process."""
    sweep = tmp_path / "sweep"
    result = cli("ablate-train", "-m", "seed=1,2", "logger.mode=disabled", *TINY_RUN, "hydra/launcher=slurm_local",
                 f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    for seed in (1, 2):
        assert json.loads((sweep / "run" / f"seed={seed}" / "summary.json").read_text())["status"] == "completed"
    assert list((sweep / ".submitit").glob("*/*_result.pkl"))  # results came back through submitit
    slurm = compose_config("hydra/launcher=slurm", hydra=True).hydra.launcher
    assert slurm._target_.endswith("SlurmLauncher") and slurm.gpus_per_node == 1 and slurm.max_num_timeout == 3


def _descendants(pid: int) -> dict[int, str]:
    """Live descendants of ``pid`` with their command lines, read from /proc."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                found.update(_descendants(int(entry.name)))
        except (OSError, ValueError, IndexError):
            continue
    return found


@pytest.mark.slow
def test_a_preempted_slurm_job_is_requeued_and_resumes(tmp_path):
    """Pre-emption as SLURM does it through submitit (USR2 to the job): the job checkpoints, is requeued,
    and the requeued job resumes the run from its last checkpoint and finishes it."""
    import signal
    import time

    sweep = tmp_path / "sweep"
    run_dir = sweep / "run" / "seed=1"
    proc = subprocess.Popen(
        [str(BIN / "ablate-train"), "-m", "seed=1", "logger.mode=disabled", "trainer.max_steps=120",
         "trainer.val_check_interval=20", "trainer.enable_progress_bar=false", "data.eval_batches=1",
         "sample.max_new_tokens=4", "data.val_fraction=0.01", "hydra/launcher=slurm_local", f"hydra.sweep.dir={sweep}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    deadline = time.time() + 300
    while not (run_dir / "checkpoints" / "last.ckpt").exists():
        assert time.time() < deadline and proc.poll() is None, "the job never wrote a checkpoint"
        time.sleep(0.5)
    (task,) = [p for p, cmd in _descendants(proc.pid).items() if "submitit.core._submit" in cmd]
    os.kill(task, signal.SIGUSR2)  # the pre-emption / timeout signal SLURM sends through submitit
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 120 and summary["resumed"] == 1
    logs = "".join(p.read_text() for p in (sweep / ".submitit").rglob("*_log.*"))
    assert "this job is preempted" in logs and "Requeued job" in logs
    assert "resuming its unfinished run" in logs


@pytest.mark.slow
def test_optuna_search_minimises_the_final_validation_loss(tmp_path):
    sweep = tmp_path / "search"
    result = cli("ablate-train", "sweeps=search_lr", "hydra.sweeper.n_trials=3", "logger.mode=disabled", *TINY_RUN,
                 f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    trials = [json.loads(p.read_text()) for p in sorted(sweep.glob("trial=*/summary.json"))]
    assert len(trials) == 3 and len({t["run_id"] for t in trials}) == 3  # three different configs
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["best_value"] == pytest.approx(min(t["val_loss_final"] for t in trials))


@pytest.mark.slow
def test_a_tuned_grid_crosses_the_arms_and_extends_by_relaunching(tmp_path):
    """A tuned key is not part of the arm: runs go to <arm>/lr=<v>/seed=<n>, records carry the value as data;
    relaunching with the key on the command line extends the grid, skips finished runs and keeps the plan whole."""
    sweep = tmp_path / "sweep"
    base = ["-m", "hydra/sweeper=ablate", "model/norm=pre,post", "seed=1", "sweep.name=tuned", "logger.mode=disabled",
            "sweep.margin=0.02", *TINY_RUN, f"hydra.sweep.dir={sweep}"]
    first = cli("ablate-train", *base, "++hydra.sweeper.tune={optim:{lr:[0.001]}}", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    summary = json.loads((sweep / "norm=post" / "lr=0.001" / "seed=1" / "summary.json").read_text())
    assert summary["arm"] == {"name": "norm=post", "parent": None, "changes": {}, "grid": {"model/norm": "post"}}
    assert summary["tune"] == {"optim.lr": 0.001} and summary["margin"] == 0.02
    assert summary["name"] == "norm=post-lr=0.001-s1" and summary["status"] == "completed"

    again = cli("ablate-train", *base, "++hydra.sweeper.tune={optim:{lr:[0.001]}}", "optim.lr=0.001,0.002", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert (again.stdout + again.stderr).count("already completed, skipping") == 2
    # the sweeper passes over finished runs itself: only the two new ones are launched as jobs
    log = again.stdout + again.stderr
    assert "Sweep of 4 runs" in log and "2 already finished, 2 to run" in log
    assert re.findall(r"\t#\d+ : .*optim\.lr=(\S+)", log) == ["0.002", "0.002"]
    for arm in ("norm=pre", "norm=post"):
        added = json.loads((sweep / arm / "lr=0.002" / "seed=1" / "summary.json").read_text())
        assert added["status"] == "completed" and added["tune"] == {"optim.lr": 0.002} and added["arm"]["name"] == arm
    plan = json.loads((sweep / "sweep.json").read_text())
    assert plan["tune"] == {"optim.lr": [0.001, 0.002]} and len(plan["jobs"]) == 4 and len(plan["commands"]) == 2
    assert sorted((j["arm"], j["point"]["optim.lr"]) for j in plan["jobs"]) == [
        ("norm=post", 0.001), ("norm=post", 0.002), ("norm=pre", 0.001), ("norm=pre", 0.002)]



@pytest.mark.slow
def test_only_launches_the_named_arms_and_an_unknown_one_is_one_line(tmp_path):
    """Extending one arm's grid runs that arm alone: the baseline need not run to be checked, and a name that is
    not an arm is refused before anything is written."""
    sweep = tmp_path / "sweep"
    base = ["-m", "sweeps=seed_to_gpt2_tuned", "seed=1", "logger.mode=disabled", *TINY_RUN, "optim.lr=0.002", "optim.warmup_steps=2"]
    run = cli("ablate-train", *base, "hydra.sweeper.only=['gpt2+norm=post']", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Sweep of 1 runs" in run.stdout + run.stderr
    done = [p.parent.relative_to(sweep).as_posix() for p in sweep.glob("*/*/*/summary.json")]
    assert done == ["gpt2+norm=post/lr=0.002/seed=1"]
    plan = json.loads((sweep / "sweep.json").read_text())
    assert [(j["arm"], j["point"]) for j in plan["jobs"]] == [("gpt2+norm=post", {"optim.lr": 0.002})]
    assert plan["baseline"] == "gpt2" and "gpt2" in plan["arms"]

    other = tmp_path / "other"
    bad = cli("ablate-train", *base, "hydra.sweeper.only=['gpt2+norm=pots']", f"hydra.sweep.dir={other}", cwd=tmp_path)
    assert bad.returncode == 2 and not other.exists()
    assert bad.stderr.strip().splitlines() == [
        "error: hydra.sweeper.only='gpt2+norm=pots' is not an arm of sweeps=seed_to_gpt2_tuned; choose from: gpt2, "
        "gpt2+norm=post, gpt2+activation=relu, gpt2+attn_scale=embed_size, gpt2+qkv=per_head_shared, "
        "gpt2+init=torch_default, gpt2+head=untied"]


def test_a_job_receives_its_arm_as_structure_and_its_record_holds_it():
    """The overrides the sweeper hands a job compose (under Hydra's struct flag) into ``sweep``, and the run's
    record states the arm exactly as the sweeper derived it, whatever its name says."""
    from ablate.train import sweep_labels
    from hydra_plugins.ablate_sweeper.ablate_sweeper import _arm_overrides, arm_structure

    structure = arm_structure({"base": ["model/norm=pre"], "post": ["model/norm=post"],
                               "post_relu": ["model/norm=post", "model/activation=relu", "model.bias=false"]})
    arm = structure["post_relu"]
    assert arm == Arm("post_relu", "post", {"model/activation": "relu", "model.bias": "false"})
    row = Arm("post_relu lr=0.001", "post lr=0.001", arm.changes, {"optim.lr": "0.001", "data.path": "it's a\\b"})
    cfg = compose_config(*_arm_overrides(row), hydra=True)
    assert sweep_labels(cfg)["arm"] == row.record()
    # the sweep's declared comparisons travel into every run's record as the sweep file wrote them
    assert sweep_labels(cfg)["compare"] == {}
    recipe = compose_config("sweeps=recipe", *_arm_overrides(row), hydra=True)
    assert sweep_labels(recipe)["compare"] == OmegaConf.to_container(recipe.sweep.compare) != {}

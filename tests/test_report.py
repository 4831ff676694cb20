"""ablate-report: statistics on synthetic sweeps with known numbers, the README and plots it writes, the
console script, and the wandb conversion checked against a real offline run."""

import csv
import json
import math
import shlex
import statistics
from pathlib import Path

import pytest
import torch
from conftest import cli, wandb_run
from matplotlib.image import imread
from scipy import stats

from ablate.errors import DataError
from ablate.gpu import cpu_name
from ablate.report import (
    Report,
    Sweep,
    arms_table,
    full_command,
    interactions,
    load_local,
    main,
    main_effects,
    reference_arm,
    resolve_baseline,
    run_from_wandb,
    spread,
    write_report,
)
from ablate.report.compare import compare, holm
from ablate.report.records import host_of

PNG = b"\x89PNG\r\n\x1a\n"


# -- synthetic sweeps -----------------------------------------------------------------------------
def write_metrics(path: Path, rows: dict[int, dict[str, float]]) -> None:
    keys = sorted({k for row in rows.values() for k in row})
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["step", *keys])
        for step in sorted(rows):
            writer.writerow([step, *(repr(rows[step][k]) if k in rows[step] else "" for k in keys)])


def curve(final: float, layers: int = 0) -> dict[int, dict[str, float]]:
    """A plausible metrics.csv: three evaluations ending near ``final``, optional per-layer diagnostics."""
    rows = {s: {"train/loss": final + 1.5 - s / 20, "val/loss": final + 1.0 - s / 20} for s in (9, 19, 29)}
    rows[30] = {"final/loss": final}
    for i in range(layers):
        for s in (9, 19, 29):
            rows[s][f"diag/grad_norm/layer_{i}"] = 1.0 + i + s / 100
            rows[s][f"diag/attn_entropy/layer_{i}"] = 2.0 - i / 10
    return rows


def write_run(root: Path, arm: str, seed: int, final: float | None, *, status: str = "completed",
              best: float | None = None, error: str | None = None, choices: dict | None = None,
              flags: dict | None = None, n_params: int = 1000, tokens: float = 100.0, layers: int | None = None, folder: str = "",
              runtime: dict | None = None) -> Path:
    out = root / folder / arm.replace(" ", "_") / f"seed={seed}"
    out.mkdir(parents=True)
    summary = {
        "run_id": f"{arm}-{seed}", "name": f"{arm}-s{seed}", "sweep": "syn", "arm": arm, "baseline": None,
        "preset": "gpt2", "choices": choices or {"norm": "pre"}, "flags": flags or {"bias": True},
        "sizes": {"n_layer": 2, "n_head": 2, "n_embd": 16, "block_size": 16}, "n_params": n_params,
        "seed": seed, "max_steps": 30, "command": f"ablate-train seed={seed}", "status": status,
        "steps": 30, "val_loss_best": best if best is not None else final, "val_loss_final": final,
        "tokens_per_sec": tokens, "wall_time_s": 1.0,
    }
    if error:
        summary["error"] = error
    if runtime:
        summary["runtime"] = runtime
    (out / "summary.json").write_text(json.dumps(summary))
    if layers is not None and final is not None:
        write_metrics(out / "metrics.csv", curve(final, layers))
    return out


def write_plan(root: Path, arms: list[str], seeds: list[int], baseline: str | None, name: str | None = "syn") -> None:
    root.mkdir(parents=True, exist_ok=True)
    jobs = [{"arm": a, "seed": s, "dir": f"{a}/seed={s}", "overrides": []} for a in arms for s in seeds]
    plan = {"name": name, "baseline": baseline, "command": "ablate-train sweeps=syn", "jobs": jobs}
    (root / "sweep.json").write_text(json.dumps(plan))


def row_of(readme: str, arm: str) -> list[str]:
    """The cells of an arm's row in the README's arms table."""
    line = next(line for line in readme.splitlines() if line.startswith(f"| `{arm}` | ") and "/" in line)
    return [c.strip() for c in line.strip("|").split("|")]


# -- statistics -----------------------------------------------------------------------------------
def test_spread_is_mean_sample_std_and_t_interval():
    values = [1.0, 1.2, 1.7, 1.3]
    s = spread(values)
    assert s.n == 4
    assert s.mean == pytest.approx(1.3, abs=1e-12)
    assert s.std == pytest.approx(statistics.stdev(values), rel=1e-12)  # n - 1 in the denominator
    half = stats.t.ppf(0.975, 3) * statistics.stdev(values) / 2  # sqrt(4) = 2
    assert s.ci == pytest.approx((1.3 - half, 1.3 + half), rel=1e-12)
    assert half == pytest.approx(3.182446305284263 * 0.2943920288775949 / 2, rel=1e-9)  # t(0.975, 3) by hand
    assert spread([2.5]) == spread([2.5]) and spread([2.5]).std is None and spread([2.5]).ci is None
    assert spread([]).mean is None


def test_welch_matches_scipy_and_the_welch_satterthwaite_interval():
    a, b = [2.10, 2.25, 2.18, 2.31], [2.00, 2.02, 1.97]
    d = compare(a, b, "ref")  # no seeds shared: Welch
    assert d.test == "Welch t"
    assert d.reference == "ref"
    assert d.diff == pytest.approx(statistics.mean(a) - statistics.mean(b), rel=1e-12)
    assert d.p == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue, rel=1e-12)
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = stats.t.ppf(0.975, dof) * math.sqrt(va + vb)
    assert d.ci == pytest.approx((d.diff - half, d.diff + half), rel=1e-9)
    assert compare([1.0], b, "ref").p is None  # one seed: no test, only the difference
    assert compare([1.0, 1.0], [2.0, 2.0], "ref").p is None  # no variance on either side


def test_reference_is_the_parent_arm_else_the_baseline():
    arms = ["gpt2", "gpt2+norm=post", "seed", "seed+norm=pre", "seed+norm=pre+qkv=fused", "gpt2 lr=0.01",
            "gpt2+norm=post lr=0.01", "other+x=1"]
    assert reference_arm("gpt2", arms, "gpt2") is None
    assert reference_arm("gpt2+norm=post", arms, "gpt2") == "gpt2"
    assert reference_arm("seed", arms, "gpt2") == "gpt2"
    assert reference_arm("seed+norm=pre", arms, "gpt2") == "seed"
    assert reference_arm("seed+norm=pre+qkv=fused", arms, "gpt2") == "seed+norm=pre"
    assert reference_arm("gpt2+norm=post lr=0.01", arms, "gpt2") == "gpt2 lr=0.01"
    assert reference_arm("other+x=1", arms, "gpt2") == "gpt2"  # "other" is no arm
    assert resolve_baseline(None, ["b", "a"]) == "b"
    assert resolve_baseline("lr=1 norm=pre", ["norm=post lr=1", "norm=pre lr=1"]) == "norm=pre lr=1"
    assert resolve_baseline("nope", ["b", "a"]) == "b"


# -- the arms table from local files --------------------------------------------------------------
FINALS = {"base": [2.00, 2.02, 1.98], "base+worse": [2.30, 2.33, 2.29], "base+same": [2.01, 1.97, 2.03]}


@pytest.fixture
def sweep_dir(tmp_path: Path) -> Path:
    root = tmp_path / "sweep"
    write_plan(root, list(FINALS) + ["flaky"], [1, 2, 3], baseline="base")
    for arm, finals in FINALS.items():
        for seed, final in enumerate(finals, 1):
            write_run(root, arm, seed, final, best=final - 0.01 * seed, n_params=1000 + len(arm),
                      tokens=100.0 * seed, layers=2)
    write_run(root, "flaky", 1, 2.5, layers=2)
    write_run(root, "flaky", 2, 2.6, layers=2)
    write_run(root, "flaky", 3, None, status="diverged")
    write_run(root, "flaky", 1, 9.0, folder="replaced-0123", layers=2)  # an older run kept aside: ignored
    return root


def test_arms_table_statistics_on_known_numbers(sweep_dir):
    report = Report.build(load_local(sweep_dir))
    rows = {a.arm: a for a in report.arms}
    assert list(rows) == ["base", "base+worse", "base+same", "flaky"]
    assert report.baseline == "base"
    for arm, finals in FINALS.items():
        a = rows[arm]
        assert (a.done, a.planned, a.diverged, a.failed) == (3, 3, 0, 0)
        assert a.final.mean == pytest.approx(statistics.mean(finals), rel=1e-12)
        assert a.final.std == pytest.approx(statistics.stdev(finals), rel=1e-12)
        half = stats.t.ppf(0.975, 2) * statistics.stdev(finals) / math.sqrt(3)
        assert a.final.ci == pytest.approx((a.final.mean - half, a.final.mean + half), rel=1e-12)
        bests = [f - 0.01 * s for s, f in enumerate(finals, 1)]
        assert a.best.mean == pytest.approx(statistics.mean(bests), rel=1e-12)
        assert a.n_params == (1000 + len(arm),) and a.tokens_per_sec == pytest.approx(200.0)
    assert rows["base"].delta is None
    raw = {arm: stats.ttest_rel(FINALS[arm], FINALS["base"]).pvalue for arm in ("base+worse", "base+same")}
    raw["flaky"] = stats.ttest_rel([2.5, 2.6], FINALS["base"][:2]).pvalue  # the seeds both have
    adjusted = dict(zip(raw, holm(list(raw.values()))))
    for arm in ("base+worse", "base+same"):
        assert rows[arm].delta.reference == "base" and rows[arm].delta.test == "paired t"  # seeds 1-3 on both sides
        assert rows[arm].delta.p == pytest.approx(raw[arm], rel=1e-12)
        assert rows[arm].delta.p_adj == pytest.approx(adjusted[arm], rel=1e-12)
        assert rows[arm].delta.diff == pytest.approx(statistics.mean(FINALS[arm]) - 2.0, rel=1e-12)
    assert rows["base+worse"].delta.p < 0.05 < rows["base+same"].delta.p
    assert (rows["base+worse"].delta.verdict, rows["base+same"].delta.verdict) == ("worse", "inconclusive")
    assert rows["base+same"].delta.mde > abs(rows["base+same"].delta.diff)  # too small an effect to see
    flaky = rows["flaky"]
    assert (flaky.done, flaky.planned, flaky.diverged, flaky.failed) == (3, 3, 1, 0)
    assert flaky.final.n == 2 and flaky.final.mean == pytest.approx(2.55)  # the replaced run's 9.0 is not in
    assert flaky.delta.reference == "base"


def test_a_declared_comparison_is_one_more_row_corrected_with_the_family(sweep_dir, tmp_path):
    """``sweep.compare`` compares two arms that are not parent and child (here two children of one parent): a
    paired t-test of their finals, Holm-adjusted together with the arms table's comparisons, in a table of its own."""
    plan = json.loads((sweep_dir / "sweep.json").read_text())
    (sweep_dir / "sweep.json").write_text(json.dumps({**plan, "compare": {"base+same": "base+worse"}}))
    report = Report.build(load_local(sweep_dir))
    (declared,) = report.declared
    assert declared.arm == "base+same" and declared.delta.reference == "base+worse"
    assert declared.delta.test == "paired t"
    assert declared.delta.diff == pytest.approx(statistics.mean(FINALS["base+same"]) - statistics.mean(FINALS["base+worse"]))
    raw = [stats.ttest_rel(FINALS[arm], FINALS["base"]).pvalue for arm in ("base+worse", "base+same")]
    raw += [stats.ttest_rel([2.5, 2.6], FINALS["base"][:2]).pvalue,
            stats.ttest_rel(FINALS["base+same"], FINALS["base+worse"]).pvalue]
    assert declared.delta.p == pytest.approx(raw[-1], rel=1e-12)
    assert declared.delta.p_adj == pytest.approx(holm(raw)[-1], rel=1e-12)
    rows = {a.arm: a for a in report.arms}
    assert rows["base+same"].delta.reference == "base"  # the arm's own row still compares with its parent
    assert rows["base+worse"].delta.p_adj == pytest.approx(holm(raw)[0], rel=1e-12)  # a family of 4, not 3
    readme = write_report(load_local(sweep_dir), tmp_path / "out").read_text()
    section = readme[readme.index("## Declared comparisons"):readme.index("## Plots")]
    assert "`base+same` with `base+worse`" in section
    assert row_of(section, "base+same")[7] == "`base+worse`"
    assert "adjusted over the 4 comparisons" in readme
    # the plot draws the family's 4 tested comparisons, the declared one too: 1.2 + 0.3 per bar inches at 110 dpi
    assert imread(tmp_path / "out" / "deltas.png").shape[0] == round(110 * (1.2 + 0.3 * 4))


def test_readme_says_it_in_words_and_numbers(sweep_dir, tmp_path):
    readme = write_report(load_local(sweep_dir), tmp_path / "out").read_text()
    sections = ["# Sweep report: syn", "## Findings", "## Reproduce", "## Arms", "## Plots", "## Missing runs"]
    assert [readme.index(s) for s in sections] == sorted(readme.index(s) for s in sections)
    findings = readme.split("## Findings")[1].split("##")[0]
    p = [stats.ttest_rel(FINALS[a], FINALS["base"]).pvalue for a in ("base+worse", "base+same")]
    p.append(stats.ttest_rel([2.5, 2.6], FINALS["base"][:2]).pvalue)
    worse_adj = holm(p)[0]
    assert "**Worse**: `base+worse` by +0.3067" in findings
    assert f"adjusted p = {worse_adj:.4f})" in findings
    assert "`base+same` by +0.0033" in findings.split("**Inconclusive**:")[1]
    assert "**Better**" not in findings and "paired t-tests" in findings and "Holm–Bonferroni" in findings
    assert "12 planned runs finished; 1 diverged and 0 failed" in findings
    assert "```bash\nablate-train sweeps=syn\n```" in readme and "30 steps" in readme
    assert "n_layer=2, n_head=2, n_embd=16, block_size=16" in readme
    cells = row_of(readme, "base+worse")
    mean, std = statistics.mean(FINALS["base+worse"]), statistics.stdev(FINALS["base+worse"])
    assert cells[1:5] == ["3/3", "0", "0", f"{mean:.4f} ± {std:.4f}"]
    assert cells[7:9] == ["`base`", f"+{mean - 2.0:.4f}"] and cells[10] == "paired t" and cells[13] == "worse"
    assert cells[15] == "1,010"
    assert row_of(readme, "flaky")[1:4] == ["3/3", "1", "0"]
    # reproducible: the same sweep gives the same README
    assert write_report(load_local(sweep_dir), tmp_path / "again").read_text() == readme


def test_partial_sweep_names_the_missing_runs(tmp_path):
    root = tmp_path / "partial"
    write_plan(root, ["a", "b"], [1, 2, 3], baseline="a")
    for seed in (1, 2, 3):
        write_run(root, "a", seed, 2.0 + seed / 100)
    write_run(root, "b", 1, 2.2)
    write_run(root, "b", 2, None, status="failed", error="RuntimeError: CUDA out of memory")
    write_run(root, "b", 3, None, status="running")
    write_run(root, "c", 7, 2.4)  # a run the plan does not know: reported, not missing
    report = Report.build(load_local(root))
    assert [(m.arm, m.seed, m.status, m.error) for m in report.missing] == [
        ("b", 2, "failed", "RuntimeError: CUDA out of memory"), ("b", 3, "running", None)]
    assert [(a.arm, a.done, a.planned, a.failed) for a in report.arms] == [
        ("a", 3, 3, 0), ("b", 1, 3, 1), ("c", 1, 1, 0)]
    (root / "b" / "seed=3" / "summary.json").unlink()  # never started
    readme = write_report(load_local(root), tmp_path / "out").read_text()
    assert "**Partial sweep:** 2 runs have no result" in readme
    missing = readme.split("## Missing runs")[1]
    assert "| `b` | 2 | failed | RuntimeError: CUDA out of memory |" in missing
    assert "| `b` | 3 | not started |  |" in missing
    assert "`a`" not in missing
    assert "Not tested" in readme and "`b`" in readme.split("Not tested")[1].split(".")[0]


def test_a_plan_with_no_baseline_compares_with_the_first_arm(tmp_path):
    root = tmp_path / "nobase"
    write_plan(root, ["x", "y"], [1, 2], baseline=None, name=None)
    for arm, base in (("x", 3.0), ("y", 3.5)):
        for seed in (1, 2):
            write_run(root, arm, seed, base + seed / 10)
    report = Report.build(load_local(root))
    assert report.sweep.name == "nobase" and report.baseline == "x"
    assert report.arms[0].delta is None and report.arms[1].delta.reference == "x"
    assert report.arms[1].delta.diff == pytest.approx(0.5)


# -- factorial designs ----------------------------------------------------------------------------
NORM = {"pre": -0.1, "post": 0.1}
ACT = {"relu": 0.2, "gelu": -0.05, "gelu_tanh": -0.15}
INTERACTION = {("pre", "relu"): 0.2, ("post", "relu"): -0.2, ("pre", "gelu"): -0.1, ("post", "gelu"): 0.1,
               ("pre", "gelu_tanh"): -0.1, ("post", "gelu_tanh"): 0.1}  # rows and columns sum to zero


def write_factorial(root: Path, interaction: dict, skip: tuple = ()) -> None:
    for norm in NORM:
        for act in ACT:
            if (norm, act) == skip:
                continue
            cell = 2.0 + NORM[norm] + ACT[act] + interaction.get((norm, act), 0.0)
            for seed, noise in ((1, -0.01), (2, 0.01)):  # symmetric noise: the cell mean is exact
                write_run(root, f"norm={norm} activation={act}", seed, cell + noise,
                          choices={"norm": norm, "activation": act, "qkv": "fused"})


def test_additive_factorial_main_effects_are_the_built_in_effects(tmp_path):
    write_factorial(tmp_path, {})
    design = Report.build(load_local(tmp_path)).design
    assert design.complete and design.axes == {"norm": ["post", "pre"], "activation": ["gelu", "gelu_tanh", "relu"]}
    effects = main_effects(design)
    assert effects["norm"] == pytest.approx(NORM, abs=1e-12)
    assert effects["activation"] == pytest.approx(ACT, abs=1e-12)
    assert all(abs(v) < 1e-12 for *_, v in interactions(design, top=100))
    assert len(interactions(design, top=100)) == 6


def test_a_built_in_interaction_is_found_as_the_largest(tmp_path):
    write_factorial(tmp_path, INTERACTION)
    design = Report.build(load_local(tmp_path)).design
    assert main_effects(design)["activation"] == pytest.approx(ACT, abs=1e-12)  # still separable
    found = interactions(design, top=6)
    assert {(la, lb): v for _, la, _, lb, v in found} == pytest.approx(INTERACTION, abs=1e-12)
    top = interactions(design)
    assert len(top) == 5 and abs(top[0][4]) == pytest.approx(0.2) and top[0][3] == "relu"
    readme = write_report(load_local(tmp_path), tmp_path / "out").read_text()
    section = readme.split("## Factorial effects")[1].split("## Plots")[0]
    assert "| `activation` | 0.3500 | `relu` | +0.2000 |" in section
    assert "| `norm` × `activation` | `" in section and "relu` | +0.2000 |" in section
    assert "`activation` has the largest main effect (range 0.3500)" in readme


def test_an_incomplete_factorial_is_not_analysed(tmp_path):
    write_factorial(tmp_path, {}, skip=("post", "relu"))
    report = Report.build(load_local(tmp_path))
    assert not report.design.complete and len(report.design.cells) == 5
    readme = write_report(load_local(tmp_path), tmp_path / "out").read_text()
    assert "only 5 of their 6 combinations have completed runs" in readme
    assert "largest main effect" not in readme


def test_runs_that_differ_in_a_flag_are_never_pooled_into_one_cell(tmp_path):
    """Named arms (gpt2_to_modern's) that change a flag, not a slot: bias is an axis of its own, so the four
    slot combinations below are not a complete 2x2 design (the bias=off runs would otherwise be pooled)."""
    for arm, norm, act, bias, final in [("a", "pre", "gelu", True, 1.0), ("a+bias=off", "pre", "gelu", False, 1.5),
                                        ("b", "post", "gelu", True, 2.0), ("c", "pre", "relu", True, 3.0),
                                        ("d", "post", "relu", True, 4.0)]:
        for seed in (1, 2):
            write_run(tmp_path, arm, seed, final, choices={"norm": norm, "activation": act}, flags={"bias": bias})
    design = Report.build(load_local(tmp_path)).design
    assert design.axes == {"norm": ["pre", "post"], "activation": ["gelu", "relu"], "bias": ["True", "False"]}
    assert not design.complete and design.cells[("pre", "gelu", "True")] == 1.0
    assert design.cells[("pre", "gelu", "False")] == 1.5
    assert "largest main effect" not in write_report(load_local(tmp_path), tmp_path / "out").read_text()


# -- plots ----------------------------------------------------------------------------------------
def assert_png(path: Path, min_width: int) -> None:
    assert path.read_bytes()[:8] == PNG
    image = imread(path)
    assert image.ndim == 3 and image.shape[1] >= min_width and image.shape[0] >= 100


def test_plots_are_valid_pngs_when_their_data_exists(sweep_dir, tmp_path):
    out = tmp_path / "out"
    readme = write_report(load_local(sweep_dir), out).read_text()
    for name, width in (("curves.png", 700), ("deltas.png", 600), ("diagnostics.png", 1100)):
        assert_png(out / name, width)
        assert f"]({name})" in readme
    assert "Skipped" not in readme


def test_plots_without_their_data_are_skipped_and_said_so(tmp_path):
    root = tmp_path / "bare"
    write_plan(root, ["a", "b"], [1, 2], baseline="a")
    for seed in (1, 2):
        write_run(root, "a", seed, 2.0 + seed / 10, layers=0)  # curves, no diagnostics
        write_run(root, "b", seed, 2.1 + seed / 10 + 0.01 * seed**2)  # no metrics.csv at all
    out = tmp_path / "out"
    (out).mkdir()
    (out / "diagnostics.png").write_bytes(b"stale")  # from an earlier report: removed
    readme = write_report(load_local(root), out).read_text()
    assert_png(out / "curves.png", 700)
    assert_png(out / "deltas.png", 600)
    assert not (out / "diagnostics.png").exists()
    assert "](diagnostics.png)" not in readme and "Skipped: no completed run logged `diag/grad_norm`" in readme
    single = tmp_path / "single"
    write_run(single, "only", 1, 2.0)
    readme = write_report(load_local(single), tmp_path / "out1").read_text()
    assert not any((tmp_path / "out1" / n).exists() for n in ("curves.png", "deltas.png", "diagnostics.png"))
    assert readme.count("Skipped:") == 3


# -- loading and the command line -----------------------------------------------------------------
def test_the_command_is_the_sweep_command_with_hydras_own_overrides(tmp_path):
    assert full_command("ablate-train model/norm=pre,post seed=1,2", ["hydra.sweep.dir=/tmp/sw", "hydra.mode=MULTIRUN"]) \
        == "ablate-train -m model/norm=pre,post seed=1,2 hydra.sweep.dir=/tmp/sw"
    assert full_command("ablate-train sweeps=factorial", []) == "ablate-train sweeps=factorial"
    # a command the sweeper wrote (with -m) is whole: the last launch's Hydra overrides are no part of the others
    only = "hydra.sweeper.only=['gpt2+norm=post']"
    written = shlex.join(["ablate-train", "-m", "hydra/launcher=parallel", "hydra.sweeper.only=['a b']", "optim.lr=0.016"])
    assert full_command(written, ["hydra.mode=MULTIRUN", only]) == \
        "ablate-train -m hydra/launcher=parallel \"hydra.sweeper.only=['a b']\" optim.lr=0.016"
    assert shlex.split(full_command(written, [only])) == shlex.split(written)  # the shell reads the same words
    assert full_command("ablate-train -m 'data.path=$HOME/x'", []) == "ablate-train -m 'data.path=$HOME/x'"
    write_plan(tmp_path, ["a"], [1], baseline="a")
    (tmp_path / "multirun.yaml").write_text("hydra:\n  overrides:\n    hydra:\n    - hydra.mode=MULTIRUN\n")
    assert load_local(tmp_path).command == "ablate-train -m sweeps=syn"


def test_more_seeds_relaunch_every_launch_of_the_sweep_with_the_longer_seed_list():
    """A sweep launched whole and then extended for one arm: the seeds that would decide a comparison are added by
    relaunching both, each with the seed list extended (a finished run is skipped), the extension still its own."""
    from ablate.report.text import more_seeds_command

    whole = "ablate-train -m hydra/launcher=parallel sweeps=tuned seed=1,2,3"
    extension = shlex.join(["ablate-train", "-m", "hydra.sweeper.only=['A+k=b']", "sweeps=tuned", "optim.lr=0.016"])
    sweep = Sweep("tuned", [], command=extension, commands=[whole, extension])
    assert more_seeds_command(sweep, [1, 2, 3], 5) == (
        "ablate-train -m hydra/launcher=parallel sweeps=tuned seed=1,2,3,4,5; "
        "ablate-train -m \"hydra.sweeper.only=['A+k=b']\" sweeps=tuned optim.lr=0.016 seed=1,2,3,4,5")
    assert more_seeds_command(sweep, [1, 2, 3], 3) is None  # as many seeds as there are: nothing to add
    # the same extension launched again for more seeds is the same launch once the seed list is replaced
    again = f"{extension} seed=4,5,6"
    assert more_seeds_command(Sweep("tuned", [], commands=[whole, extension, again]), [1, 2, 3, 4, 5, 6], 7) == (
        "ablate-train -m hydra/launcher=parallel sweeps=tuned seed=1,2,3,4,5,6,7; "
        "ablate-train -m \"hydra.sweeper.only=['A+k=b']\" sweeps=tuned optim.lr=0.016 seed=1,2,3,4,5,6,7")
    assert more_seeds_command(Sweep("x", []), [1, 2], 4) is None  # no command known


def test_loading_refuses_what_is_not_a_sweep(tmp_path):
    with pytest.raises(DataError, match="no such folder"):
        load_local(tmp_path / "nowhere")
    with pytest.raises(DataError, match="no runs in it"):
        load_local(tmp_path)
    (tmp_path / "sweep.json").write_text("{not json")
    with pytest.raises(DataError, match=r"sweep.json: unreadable"):
        load_local(tmp_path)


def test_main_refuses_an_unknown_baseline(sweep_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([str(sweep_dir), "--out", str(tmp_path / "o"), "--baseline", "nope"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --baseline 'nope' is not an arm; choose one of: base, base+worse")
    assert err.count("\n") == 1
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_console_script_writes_the_report(sweep_dir, tmp_path):
    done = cli("ablate-report", str(sweep_dir), "--baseline", "base+same", cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    readme = tmp_path / "reports" / "syn" / "README.md"
    assert done.stdout.strip() == "Report: reports/syn/README.md"
    text = readme.read_text()
    assert f"```bash\nablate-report {sweep_dir} --baseline base+same\n```" in text
    assert row_of(text, "base+same")[7] == "—" and row_of(text, "base+worse")[7] == "`base`"  # parent first
    assert row_of(text, "base")[7] == "`base+same`" and row_of(text, "flaky")[7] == "`base+same`"


@pytest.mark.slow
@pytest.mark.parametrize("case", ["missing", "empty"])
def test_console_script_bad_sweep_dir_is_one_line_and_status_2(tmp_path, case):
    target = tmp_path / "missing" if case == "missing" else tmp_path
    done = cli("ablate-report", str(target), cwd=tmp_path, timeout=120)
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: {target}: ") and done.stderr.count("\n") == 1
    assert ("no such folder" if case == "missing" else "no runs in it") in done.stderr
    assert not (tmp_path / "reports").exists()


@pytest.mark.slow
def test_wandb_without_an_api_key_is_one_line_and_status_2(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "NETRC": str(tmp_path / "netrc"),
           "WANDB_CONFIG_DIR": str(tmp_path / "wandb-config")}
    done = cli("ablate-report", "--wandb", "me/ablate", "--group", "syn", cwd=tmp_path, env=env, timeout=120)
    assert done.returncode == 2
    assert done.stderr.startswith("error: cannot read wandb runs of me/ablate group 'syn'")
    assert done.stderr.count("\n") == 1


# -- wandb: the same report from an offline run read back with wandb's own reader ---------------------
@pytest.mark.slow
def test_wandb_records_give_the_same_report_as_the_local_files(compose_cfg, tmp_path):
    from ablate.train import run

    cfg = compose_cfg(
        "trainer.max_steps=20", "trainer.val_check_interval=10", "data.eval_batches=2",
        "trainer.enable_progress_bar=false", "sample.max_new_tokens=8", "logger.mode=offline", "sweep.arm=a",
        "model.n_layer=2", "model.n_head=2", "model.n_embd=16", "model.block_size=16",
    )
    run(cfg, tmp_path / "run")
    local = load_local(tmp_path / "run")
    config, summary, history, name = wandb_run(tmp_path / "run")
    remote = Sweep(name=local.name, runs=[run_from_wandb(config, summary, history, name)], baseline=local.baseline)
    (mine,), (theirs,) = local.runs, remote.runs
    assert mine.flags == {"dropout": 0.0, "attn_dropout": 0.0, "bias": True, "tie_embeddings": True,
                          "lm_head_bias": False}
    for key in ("arm", "seed", "status", "name", "preset", "choices", "flags", "sizes", "n_params", "max_steps", "steps",
                "val_loss_best", "val_loss_last", "val_loss_final", "tokens_per_sec", "host"):
        assert getattr(theirs, key) == getattr(mine, key), key
    assert mine.host == (torch.cuda.get_device_name() if torch.cuda.is_available() else
                         f"{cpu_name()} ({torch.backends.cpu.get_cpu_capability()})")
    assert mine.val_loss_final is not None and mine.tokens_per_sec > 0 and mine.arm == "a"
    assert {"val/loss", "final/loss", "diag/grad_norm/layer_1", "diag/attn_entropy/layer_1"} <= set(mine.metrics)
    for key, series in mine.metrics.items():
        assert theirs.metrics[key] == series, key
    ours, wandbs = Report.build(local), Report.build(remote)
    assert wandbs.arms == ours.arms and wandbs.arms[0].done == 1
    assert arms_table(wandbs.arms) == arms_table(ours.arms)
    assert write_report(remote, tmp_path / "w").read_text().split("## Reproduce")[0] == \
        write_report(local, tmp_path / "l").read_text().split("## Reproduce")[0]


CPU = {"device": "cpu", "cpu": "AMD EPYC", "cpu_capability": "AVX2", "threads": 2}


def test_the_reproduce_section_counts_the_hosts_the_runs_state(tmp_path):
    root = tmp_path / "sweep"
    write_run(root, "a", 1, 1.9, runtime=CPU)
    write_run(root, "a", 2, 1.9, runtime={**CPU, "cpu_capability": "AVX512"})
    write_run(root, "b", 1, 1.8, runtime={**CPU, "cpu_capability": "AVX512"})
    write_run(root, "b", 2, 1.8)  # a record from before runs stated their host
    write_run(root, "b", 3, None, status="failed", runtime={"device": "NVIDIA H200", "cpu": "Intel Xeon"})
    text = write_report(load_local(root), tmp_path / "out").read_text()
    assert ("Hosts, from the runs' records: AMD EPYC (AVX512): 2 runs; AMD EPYC (AVX2): 1 run; not recorded: 1 (runs "
            "from before records stated their host).") in text  # finished runs only: the failed one is not counted
    before = tmp_path / "before"
    write_run(before, "a", 1, 1.9)
    assert "Hosts" not in write_report(load_local(before), tmp_path / "out2").read_text()


@pytest.mark.parametrize("runtime, host", [
    (CPU, "AMD EPYC (AVX2)"),
    ({"device": "NVIDIA H200", "cpu": "Intel Xeon", "cpu_capability": "AVX512"}, "NVIDIA H200"),  # the GPU's run
    ({"device": "cpu", "cpu": "Apple M2"}, "Apple M2"),
    ({"device": "cpu", "precision": "32-true"}, None),  # recorded before the host was
    (None, None),
])
def test_a_runs_host_is_its_gpu_or_its_cpu_with_its_kernels(runtime, host):
    assert host_of(runtime) == host


def test_plain_words_say_which_settings_matter_in_both_directions(tmp_path):
    """Two models, A and B, and every setting swapped both ways, with effects built in: k1 hurts A and helps
    B (a consistent winner), k2 hurts both (depends on the rest), k3 matters in A only, k4 not at all."""
    root = tmp_path / "sweep"
    effects = {  # arm -> final loss per seed (seeds 1, 2, 3)
        "A": [1.00, 1.01, 1.02], "B": [2.00, 2.01, 2.02],
        "A+k1=b": [1.30, 1.32, 1.31], "B+k1=a": [1.70, 1.72, 1.71],
        "A+k2=b": [1.20, 1.22, 1.21], "B+k2=a": [2.20, 2.22, 2.21],
        "A+k3=b": [1.10, 1.115, 1.12], "B+k3=a": [2.00, 2.03, 1.98],
        "A+k4=b": [1.01, 0.99, 1.03], "B+k4=a": [2.01, 2.02, 1.99],
    }
    for arm, finals in effects.items():
        for seed, final in enumerate(finals, 1):
            write_run(root, arm, seed, final, layers=0)
    write_plan(root, list(effects), [1, 2, 3], baseline="A")
    text = write_report(load_local(root), tmp_path / "out").read_text()
    plain = text.split("## Findings")[1].split("## Reproduce")[0]
    assert plain.index("`B` ends at 2.0100 and `A` at 1.0100: +1.0000") < plain.index("k1")
    lines = {line.split("**")[1]: line for line in plain.splitlines() if line.startswith("- **")}
    assert lines["`k1` matters"].startswith("- **`k1` matters**: `b` is worse whichever model it goes into")
    assert "in `A`, `k1=b` changes the loss by +0.3000" in lines["`k1` matters"]
    assert "in `B`, `k1=a` changes the loss by -0.3000 (better" in lines["`k1` matters"]
    assert "k2" in lines["`k2` matters, but which value is better depends on the rest of the model"]
    assert "in `A`, `k3=b` changes the loss by +0.1017 (worse" in lines["`k3` matters in one direction only"]
    assert "(inconclusive, adjusted p = " in lines["`k3` matters in one direction only"]
    assert "`k4` is not decided" in lines
    assert next(iter(lines)) == "`k1` matters"  # the largest effect first


# -- a tuned sweep --------------------------------------------------------------------------------
GRID = [1e-3, 2e-3, 4e-3, 8e-3, 1.6e-2]


def tuned_loss(arm: str, lr: float, seed: int) -> float:
    """A is best at lr 4e-3 (1.90); A+k=b is best at 7e-4, below the grid, and lower there (1.85), so it loses
    at A's best learning rate and wins at its own: the ranking flips."""
    x, offset = math.log2(lr), 0.004 * (seed - 2) + 0.001 * math.sin(7 * lr * seed)
    if arm == "A":
        return 1.90 + 0.05 * (x - math.log2(4e-3)) ** 2 + offset
    return 1.85 + 0.1 * (x - math.log2(7e-4)) ** 2 + offset


def test_a_tuned_sweep_compares_each_arm_at_its_own_best_learning_rate(tmp_path):
    root = tmp_path / "tuned"
    jobs = []
    for arm in ("A", "A+k=b"):
        for lr in GRID:
            for seed in (1, 2, 3):
                out = root / arm / f"lr={lr}" / f"seed={seed}"
                out.mkdir(parents=True)
                diverged = arm == "A" and lr == GRID[-1] and seed == 2
                final = None if diverged else tuned_loss(arm, lr, seed)
                (out / "summary.json").write_text(json.dumps({
                    "run_id": f"{arm}{lr}{seed}", "arm": arm, "seed": seed, "tune": {"optim.lr": lr}, "margin": 0.01,
                    "status": "diverged" if diverged else "completed", "val_loss_final": final, "val_loss_best": final,
                    "max_steps": 30, "sizes": {"n_layer": 2}}))
                jobs.append({"arm": arm, "seed": seed, "point": {"optim.lr": lr}, "dir": str(out), "overrides": []})
    (root / "sweep.json").write_text(json.dumps({"name": "tuned", "baseline": "A", "margin": 0.01, "jobs": jobs,
                                                 "tune": {"optim.lr": GRID}, "command": "ablate-train -m sweeps=tuned"}))
    out = tmp_path / "out"
    readme = write_report(load_local(root), out).read_text()
    report = Report.build(load_local(root))
    a, b = report.tuned_arms
    assert (a.arm, b.arm) == ("A", "A+k=b")
    assert a.best_value == pytest.approx(4e-3, rel=0.1) and a.fit.edge is None
    assert math.log2(1.6e-2) in a.fit.excluded and a.diverged == {(2, 1.6e-2)}  # the divergence is the edge
    assert len(a.fit.xs) == 3 and math.log2(1.6e-2) not in a.fit.xs  # the minimum and its two neighbours
    assert b.fit.edge == "low" and b.next_grid() == [2.5e-4, 5e-4]
    (c,) = report.tuned
    assert c.untuned > 0.1 and c.untuned_verdict == "worse" and c.tuned < -0.02 and c.tuned_verdict == "better"
    assert c.flipped and "**flips**" in readme
    assert "| `A` | 0.004 |" in readme and "0.016 (seed 2)" in readme
    assert "**at the low edge**: run lr = 0.00025, 0.0005" in readme
    assert "ablate-train -m sweeps=tuned \"hydra.sweeper.only=['A+k=b']\" optim.lr=0.00025,0.0005\n" in readme
    assert "The ranking flips for `A+k=b`" in readme
    # the per-value table compares each arm with its reference at the same learning rate
    assert row_of(readme, "A+k=b lr=0.004")[7] == "`A lr=0.004`"
    assert_png(out / "lr.png", 700) and "](lr.png)" in readme


def test_a_grid_extended_for_one_arm_moves_its_optimum_inside_and_leaves_the_others_as_they_were(tmp_path):
    """The report's extension command runs A+k=b alone at 2.5e-4 and 5e-4: its optimum (7e-4) is then inside
    the grid; A never ran there, so its row does not list those values as left out of its fit."""
    root = tmp_path / "tuned"
    jobs = []
    for arm, grid in (("A", GRID), ("A+k=b", [2.5e-4, 5e-4, *GRID])):
        for lr in grid:
            for seed in (1, 2, 3):
                out = root / arm / f"lr={lr}" / f"seed={seed}"
                out.mkdir(parents=True)
                final = tuned_loss(arm, lr, seed)
                (out / "summary.json").write_text(json.dumps({
                    "run_id": f"{arm}{lr}{seed}", "arm": arm, "seed": seed, "tune": {"optim.lr": lr},
                    "status": "completed", "val_loss_final": final, "val_loss_best": final, "max_steps": 30}))
                jobs.append({"arm": arm, "seed": seed, "point": {"optim.lr": lr}, "dir": str(out), "overrides": []})
    (root / "sweep.json").write_text(json.dumps({"name": "tuned", "baseline": "A", "jobs": jobs,
                                                 "tune": {"optim.lr": [2.5e-4, 5e-4, *GRID]}}))
    report = Report.build(load_local(root))
    a, b = report.tuned_arms
    assert a.tried == tuple(GRID) and b.tried == (2.5e-4, 5e-4, *GRID)
    assert b.fit.edge is None and b.best_value == pytest.approx(7e-4, rel=0.15)
    assert a.fit.edge is None and a.next_grid() is None
    readme = write_report(load_local(root), tmp_path / "out").read_text()
    assert "| `A` | 0.004 |" in readme
    a_row = next(line for line in readme.splitlines() if line.startswith("| `A` | 0.004 |"))
    assert a_row.endswith("| 0.001, 0.016 |")  # its own grid's values away from the minimum, not b's extension
    assert "No reference at the grid value (run for the arm alone, as an extension of its grid): " \
           "`A+k=b lr=0.00025`, `A+k=b lr=0.0005`." in readme
    assert "Not tested (fewer than two completed seeds on a side, or no variance): `A+k=b lr=0.00025`" not in readme


def test_a_declared_comparison_of_two_tuned_arms_compares_their_optima(tmp_path):
    """Two architectures (A, B) each with and without a change: besides each arm against its parent (or the
    baseline), the sweep declares B+k=b against A+k=b, the architectures under the change; it joins the tuned
    family, and its Δ at each arm's own best is the planted 0.01."""
    root = tmp_path / "tuned"
    shift = {"A": ("A", 0.0), "A+k=b": ("A+k=b", 0.0), "B": ("A", 0.03), "B+k=b": ("A+k=b", 0.01)}
    jobs = []
    for arm, (like, plus) in shift.items():
        for lr in GRID:
            for seed in (1, 2, 3):
                out = root / arm / f"lr={lr}" / f"seed={seed}"
                out.mkdir(parents=True)
                final = tuned_loss(like, lr, seed) + plus
                (out / "summary.json").write_text(json.dumps({
                    "run_id": f"{arm}{lr}{seed}", "arm": arm, "seed": seed, "tune": {"optim.lr": lr},
                    "status": "completed", "val_loss_final": final, "val_loss_best": final, "max_steps": 30}))
                jobs.append({"arm": arm, "seed": seed, "point": {"optim.lr": lr}, "dir": str(out), "overrides": []})
    (root / "sweep.json").write_text(json.dumps({"name": "tuned", "baseline": "A", "jobs": jobs, "tune": {"optim.lr": GRID},
                                                 "compare": {"B+k=b": "A+k=b"}}))
    report = Report.build(load_local(root))
    assert [(c.arm, c.reference) for c in report.tuned] == [("A+k=b", "A"), ("B", "A"), ("B+k=b", "B"),
                                                            ("B+k=b", "A+k=b")]
    assert {c.level for c in report.tuned} == {1 - 0.05 / 4}
    declared = report.tuned[-1]
    assert declared.tuned == pytest.approx(0.01, abs=1e-9) and declared.tuned_verdict == "worse"  # no spread
    # at each grid value too: the declared arm against the declared reference at the same learning rate
    assert [(a.arm, a.delta.reference) for a in report.declared] == [(f"B+k=b lr={lr}", f"A+k=b lr={lr}") for lr in GRID]
    assert all(a.delta.diff == pytest.approx(0.01) for a in report.declared)


def test_a_preface_opens_the_report_and_a_bad_one_is_one_line(sweep_dir, tmp_path, capsys):
    (tmp_path / "preface.md").write_text("What this study found, in the study's words.\n")
    main([str(sweep_dir), "--out", str(tmp_path / "out"), "--preface", str(tmp_path / "preface.md")])
    readme = (tmp_path / "out" / "README.md").read_text()
    assert readme.index("What this study found") < readme.index("## Findings")
    assert f"--preface {tmp_path / 'preface.md'}" in readme  # the command that regenerates it says so
    with pytest.raises(SystemExit) as exit_:
        main([str(sweep_dir), "--out", str(tmp_path / "o2"), "--preface", str(tmp_path / "nope.md")])
    assert exit_.value.code == 2 and capsys.readouterr().err.startswith("error: --preface ")


def test_a_two_level_half_fraction_gets_its_effects_with_verdicts(tmp_path):
    """The founding study's design: five two-level axes, the 16 combinations of the resolution-V half fraction,
    3 seeds; norm=post costs 0.05 alone and 0.03 more with relu (an interaction), nothing else matters."""
    import itertools

    axes = {"positional": ("learned", "sinusoidal"), "norm": ("pre", "post"), "activation": ("gelu_tanh", "relu"),
            "attn_scale": ("head_dim", "embed_size"), "layernorm": ("torch", "custom")}
    root = tmp_path / "frac"
    cells = [c for c in itertools.product((0, 1), repeat=5) if sum(c) % 2 == 0]
    arms = []
    for combo in cells:
        choices = {axis: levels[i] for (axis, levels), i in zip(axes.items(), combo)}
        changed = [f"{axis}={choices[axis]}" for axis, i in zip(axes, combo) if i]
        arm = "+".join(["gpt2", *changed])
        arms.append(arm)
        post, relu = choices["norm"] == "post", choices["activation"] == "relu"
        for seed in (1, 2, 3):
            noise = 0.002 * math.sin(17 * seed + 3 * len(arm))
            final = 1.9 + 0.01 * seed + 0.05 * post + 0.03 * (post and relu) + noise
            write_run(root, arm, seed, final, choices=choices)
    write_plan(root, arms, [1, 2, 3], baseline="gpt2")
    report = Report.build(load_local(root))
    assert not report.design.complete and report.design.two_level and len(report.design.cells) == 16
    effects = {e.reference: e for e in report.effects}
    assert len(effects) == 15 and report.low["norm"] == "pre"
    # coded ±1, norm's effect averages the relu and gelu halves: 0.05 + 0.03 / 2; the interaction is 0.03 / 2
    assert effects["norm"].diff == pytest.approx(0.065, abs=0.003) and effects["norm"].verdict == "worse"
    assert effects["norm × activation"].diff == pytest.approx(0.015, abs=0.003)
    assert effects["norm × activation"].verdict == "worse"
    assert effects["layernorm"].verdict == "equivalent"  # no effect, tight noise: within ±0.01
    readme = write_report(load_local(root), tmp_path / "out").read_text()
    section = readme.split("## Factorial effects")[1].split("## Plots")[0]
    assert "fraction (16 of 32 combinations)" in section and "| `norm`: `pre` → `post` | +0.06" in section
    assert "Factorial effects (15, one family" in readme.split("## Reproduce")[0]


def test_lr_plot_labels_a_grid_extended_by_midpoints_without_overprinting():
    """seed_to_gpt2_tuned's grid: the midpoints toward a failed rate (2.18e-3 .. 2.83e-3, and 0.0113) get a tick each
    but no label of their own, so the labels of the grid's factor-2 values stay legible."""
    from ablate.report.tuning import _tick_labels

    grid = [5e-4, 1e-3, 2e-3, 2.18e-3, 2.38e-3, 2.83e-3, 4e-3, 8e-3, 0.0113, 0.016, 0.032]
    assert _tick_labels(grid) == ["0.0005", "0.001", "0.002", "", "", "", "0.004", "0.008", "", "0.016", "0.032"]
    assert _tick_labels([1e-3]) == ["0.001"] and _tick_labels([1e-3, 2e-3]) == ["0.001", "0.002"]

"""The run record as ablate.contract defines it: metrics.csv written and read back exactly, the summary fields derived
from the metrics, and arms as structure (parent, changes) derived from the sweep files' override lists and read by
the report in place of their names."""

import json
import math
import shutil
from pathlib import Path

import pytest
import yaml

from ablate.config import sweeps_dir
from ablate.contract import SUMMARY, Arm, arm_of, derive_arms, metric_fields, metrics_csv, parse_metrics
from ablate.report import Report, load_local
from ablate.report.arms import _legacy_parent, reference_arm
from ablate.report.factorial import grid_levels
from ablate.report.readme import render_readme
from ablate.report.records import RunData
from ablate.report.text import swaps
from hydra_plugins.ablate_sweeper.ablate_sweeper import arm_structure

ROOT = Path(__file__).parents[1]
ARMED = sorted(p.stem for p in sweeps_dir().glob("*.yaml")
               if ((yaml.safe_load(p.read_text()).get("hydra") or {}).get("sweeper") or {}).get("arms"))


def declared(name: str) -> dict[str, list[str]]:
    return yaml.safe_load((sweeps_dir() / f"{name}.yaml").read_text())["hydra"]["sweeper"]["arms"]


# -- metrics.csv and the fields derived from it ----------------------------------------------------
def test_metrics_csv_round_trips_exactly_sparse_rows_and_non_finite_values():
    rows = {0: {"train/loss": 4.1741}, 5: {"train/loss": 1 / 3, "val/loss": math.inf},
            10: {"val/loss": math.nan, "final/loss": 2.0000000000000004}}
    text = metrics_csv(rows)
    assert text.splitlines()[0] == "step,final/loss,train/loss,val/loss"
    back = parse_metrics(text)
    assert back.keys() == rows.keys()
    for step, row in rows.items():
        assert back[step].keys() == row.keys()
        assert all(back[step][k] == v or (math.isnan(v) and math.isnan(back[step][k])) for k, v in row.items())


def test_summary_fields_come_from_the_rows():
    rows = {4: {"train/loss": 3.0, "train/time": 2.0, "train/lengths": 1000.0}, 5: {"val/loss": 2.5},
            9: {"train/loss": 2.0, "train/time": 4.0, "train/lengths": 3000.0}, 10: {"val/loss": 2.7},
            11: {"final/loss": 2.6}}
    assert metric_fields(rows) == {"val_loss_best": 2.5, "val_loss_last": 2.7, "val_loss_final": 2.6, "steps": 10,
                                   "tokens_per_sec": 750.0}
    assert metric_fields({}) == {}  # nothing logged: nothing claimed


# -- arms as structure ----------------------------------------------------------------------------
def test_the_shipped_sweeps_have_arms():
    assert {"seed_to_gpt2", "gpt2_to_modern", "founding", "seed_to_gpt2_tuned"} <= set(ARMED)


@pytest.mark.parametrize("name", ARMED)
def test_each_arm_is_its_parent_plus_its_changes(name):
    """The changes restore the arm's overrides from its parent's; the parent is the arm its name says it changes
    wherever the name says one (the shipped sweeps name arms ``<parent>+<change>``), found from the overrides."""
    arms = declared(name)
    structure = arm_structure(arms)
    assert list(structure) == list(arms)
    with_parent = 0
    for arm, overrides in arms.items():
        got = structure[arm]
        parent = set(arms[got.parent]) if got.parent else set()
        assert parent | {f"{k}={v}" for k, v in got.changes.items()} == set(overrides), arm
        assert not parent & {f"{k}={v}" for k, v in got.changes.items()}
        named = _legacy_parent(arm, list(arms))
        assert got.parent == named, arm
        with_parent += got.parent is not None
    assert with_parent >= len(arms) // 2


def test_the_parent_is_the_largest_subset_then_the_longest_shared_prefix():
    arms = derive_arms({
        "base": [("model", "gpt2")],
        "a": [("model", "gpt2"), ("x", "1")],
        "b": [("model", "gpt2"), ("y", "1")],
        "ab": [("model", "gpt2"), ("y", "1"), ("x", "1")],  # b's overrides lead its list
        "other": [("model", "seed")],
    })
    assert arms["ab"] == Arm("ab", "b", {"x": "1"})
    assert arms["a"].parent == "base" and arms["a"].changes == {"x": "1"}
    assert arms["base"] == Arm("base", None, {"model": "gpt2"}) and arms["other"].parent is None


def test_the_reference_comes_from_the_structure_not_the_name():
    """Names that say nothing (``post_relu``) still compare with their parent; a structured root arm whose name
    looks like a change (``x+y``) compares with the baseline."""
    arms = ["base", "post", "post_relu", "x+y", "x"]
    structure = {"post_relu": Arm("post_relu", "post", {"model/activation": "relu"}),
                 "post": Arm("post", "base", {"model/norm": "post"}), "x+y": Arm("x+y", None, {"model": "seed"})}
    assert reference_arm("post_relu", arms, "base", structure) == "post"
    assert reference_arm("post", arms, "base", structure) == "base"
    assert reference_arm("x+y", arms, "base", structure) == "base"
    assert reference_arm("x+y", arms, "base") == "x"  # a record without structure: its name is all there is


def test_records_hold_the_arm_as_structure_and_old_ones_as_a_name():
    arm = Arm("gpt2+norm=post lr=0.001", "gpt2 lr=0.001", {"model/norm": "post"}, {"optim.lr": "0.001"})
    assert arm_of(json.loads(json.dumps(arm.record()))) == (arm.name, arm)
    assert arm_of("gpt2+norm=post") == ("gpt2+norm=post", None)
    assert arm_of(None) == (None, None)
    assert grid_levels(RunData(arm.name, structure=arm)) == {"lr": "0.001"}
    assert grid_levels(RunData("norm=pre lr=0.001")) == {"norm": "pre", "lr": "0.001"}  # an old record's name


@pytest.mark.slow
@pytest.mark.parametrize("study", ["seed_to_gpt2", "gpt2_to_modern"])
def test_structured_records_make_the_committed_report(tmp_path, study):
    """The committed records with their arms as the sweeper now records them (structure derived from the sweep
    file) give the same rows, references and numbers as the committed report; only the words for a change differ
    where the arm's name and its overrides do (``head=untied`` is ``tie_embeddings=false lm_head_bias=true``)."""
    records = tmp_path / "records"
    shutil.copytree(ROOT / "reports" / study / "records", records)
    structure = arm_structure(declared(study))
    for path in records.rglob(SUMMARY):
        summary = json.loads(path.read_text())
        assert isinstance(summary["arm"], str)  # the committed records predate structured arms
        summary["arm"] = structure[summary["arm"]].record()
        path.write_text(json.dumps(summary))
    old, new = (Report.build(load_local(d)) for d in (ROOT / "reports" / study / "records", records))
    assert new.sweep.arms and not old.sweep.arms
    assert repr(new.arms) == repr(old.arms)  # every row, reference, Δ, p and verdict
    assert [(a.arm, b.arm) for a, b in swaps(new.sweep, new.arms).values()] == \
        [(a.arm, b.arm) for a, b in swaps(old.sweep, old.arms).values()]
    committed = (ROOT / "reports" / study / "README.md").read_text().splitlines()
    for report in (old, new):
        report.sweep.source = (f"ablate-report reports/{study}/records --out reports/{study} "
                               f"--preface reports/{study}/preface.md")
        report.sweep.preface = (ROOT / "reports" / study / "preface.md").read_text()
    written = [name for name in ("curves.png", "deltas.png", "diagnostics.png")
               if (ROOT / "reports" / study / name).exists()]
    assert render_readme(old, written).splitlines() == committed
    differ = [(a, b) for a, b in zip(committed, render_readme(new, written).splitlines()) if a != b]
    assert differ and all("**`head` is not decided**" in a or "**`bias` is not decided**" in a for a, _ in differ)
    assert all("tie_embeddings=" in b or "bias=false" in b for _, b in differ)

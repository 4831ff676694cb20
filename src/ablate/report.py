"""``ablate-report``: a finished or partial sweep as a folder holding ``README.md`` and PNG plots.

The report is built from plain run records (:class:`RunData`) that two loaders produce: the local
record every run writes (``summary.json`` and ``metrics.csv``, see :mod:`ablate.records`), or the same
runs read back from wandb. An arm's seeds are its replicates; each arm is compared with its parent
arm (``<parent>+<change>``) or else with the sweep's baseline, by Welch's t-test on the final
validation loss over seeds: paired over shared seeds (seed s gives every arm the same data order),
Welch's otherwise, the family corrected (Holm by default), each comparison given one of four verdicts
(better, worse, equivalent within the sweep's margin, inconclusive) with its power. A sweep with a
``tune:`` grid is also analysed arm by arm at each arm's own best learning rate (:mod:`ablate.statistics`).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import re
import shlex
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields, replace
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from ablate.errors import AblateError, ArgumentParser, ConfigError, DataError
from ablate.io import FINISHED, METRICS, PLAN, SUMMARY, atomic_write_text
from ablate.statistics import ALPHA, CORRECTIONS, MARGIN, Comparison, adjust, compare, two_level_effects
from ablate.tuning import (
    Points,
    TunedArm,
    TunedComparison,
    compare_tuned,
    plot_lr,
    section,
    summary_sentence,
    tuned_arm,
)

MULTIRUN = "multirun.yaml"  # Hydra's copy of the sweep's config
SIZES = ("n_layer", "n_head", "n_embd", "block_size")
LEVEL = 0.95


# -- run records ----------------------------------------------------------------------------------
@dataclass
class RunData:
    """One run as the report needs it, whichever loader read it: summary fields plus its metrics."""

    arm: str
    seed: int | None = None
    status: str = "running"  # completed | diverged | failed | running
    name: str = ""
    baseline: str | None = None
    preset: str | None = None
    choices: dict[str, str] = field(default_factory=dict)
    flags: dict[str, Any] = field(default_factory=dict)  # bias, tie_embeddings, ...: architecture beyond the slots
    sizes: dict[str, int] = field(default_factory=dict)
    n_params: int | None = None
    max_steps: int | None = None
    command: str | None = None
    version: str | None = None  # ablate's version and commit that made the run
    error: str | None = None
    tune: dict[str, float] = field(default_factory=dict)  # the tuned keys' values: {"optim.lr": 0.001}
    base_arm: str = ""  # the arm without its grid point (``arm`` adds it in a tuned sweep)
    margin: float | None = None  # the sweep's practical margin (nats)
    steps: int | None = None
    val_loss_best: float | None = None
    val_loss_last: float | None = None
    val_loss_final: float | None = None
    tokens_per_sec: float | None = None
    wall_time_s: float | None = None
    metrics: dict[str, dict[int, float]] = field(default_factory=dict)  # metric -> {step: value}


@dataclass
class Sweep:
    """The runs found, and the (arm, seed) pairs the sweep planned where its plan is known."""

    name: str
    runs: list[RunData]
    planned: list[tuple[str, int | None]] = field(default_factory=list)
    baseline: str | None = None
    command: str | None = None
    commands: list[str] = field(default_factory=list)  # every launch into the sweep's folder, first to last
    source: str = ""  # the ablate-report command that regenerates the report
    tune: dict[str, list[float]] = field(default_factory=dict)  # the tuned keys and their grids
    cells: dict[str, tuple[str, str]] = field(default_factory=dict)  # tuned sweep: cell -> (arm, grid point)
    margin: float | None = None  # the practical margin the sweep declared (None: MARGIN)
    correction: str = "holm"  # holm | bh
    preface: str = ""  # the study's own words, placed before the findings (ablate-report --preface FILE)


def point_label(tune: dict[str, Any]) -> str:
    """A run's grid point in words: ``{"optim.lr": 0.001}`` -> ``lr=0.001``."""
    return " ".join(f"{key.split('.')[-1]}={value}" for key, value in tune.items())


def cell(arm: str, tune: dict[str, Any]) -> str:
    """What tables group a run by: its arm, and in a tuned sweep its grid point (``gpt2 lr=0.001``), so the
    runs of an arm at one learning rate are its replicates there and ``gpt2+norm=post lr=0.001`` compares
    with ``gpt2 lr=0.001``."""
    return " ".join(filter(None, [arm, point_label(tune)]))


def _arm_name(arm: str | None, name: str | None, seed: Any) -> str:
    """A run outside a sweep has no arm: its name without the seed suffix stands in."""
    if arm:
        return str(arm)
    return re.sub(rf"-s{seed}$", "", name) if name else "run"


def parse_metrics_csv(text: str) -> dict[str, dict[int, float]]:
    """``metrics.csv`` (a ``step`` column, sparse rows) as {metric: {step: value}}."""
    metrics: dict[str, dict[int, float]] = {}
    for row in csv.DictReader(io.StringIO(text)):
        step = int(row.pop("step"))
        for key, value in row.items():
            if value:
                metrics.setdefault(key, {})[step] = float(value)
    return metrics


def run_from_files(summary: dict[str, Any], metrics_csv: str) -> RunData:
    """A run from its local record: the fields of ``summary.json`` and the rows of ``metrics.csv``."""
    known = {f.name for f in fields(RunData)} - {"arm", "status", "metrics"}
    values = {k: summary[k] for k in known if summary.get(k) is not None}
    base = _arm_name(summary.get("arm"), summary.get("name"), summary.get("seed"))
    values["base_arm"] = base
    return RunData(arm=cell(base, summary.get("tune") or {}), status=summary.get("status") or "running",
                   metrics=parse_metrics_csv(metrics_csv), **values)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        return float(value)  # wandb may hand back "NaN" / "Infinity" as strings
    except ValueError:
        return None


def metrics_from_history(history: Iterable[dict[str, Any]]) -> dict[str, dict[int, float]]:
    """wandb history rows as {metric: {step: value}}, keyed by Lightning's step like ``metrics.csv``."""
    metrics: dict[str, dict[int, float]] = {}
    for row in history:
        step = row.get("trainer/global_step", row.get("_step"))
        for key, value in row.items():
            number = _number(value)
            if step is None or number is None or key.startswith("_") or key in ("trainer/global_step", "epoch", "step"):
                continue
            metrics.setdefault(key, {})[int(step)] = number
    return metrics


def record_fields(metrics: dict[str, dict[int, float]]) -> dict[str, Any]:
    """The summary fields that ablate.records derives from the logged metrics, derived the same way."""
    val, final, train = (metrics.get(k, {}) for k in ("val/loss", "final/loss", "train/loss"))
    time, lengths = metrics.get("train/time", {}), metrics.get("train/lengths", {})
    timed = [s for s, t in time.items() if t and s in lengths]
    return {
        "val_loss_best": min(val.values()) if val else None,
        "val_loss_last": val[max(val)] if val else None,
        "val_loss_final": final[max(final)] if final else None,
        "steps": max(train) + 1 if train else None,
        "tokens_per_sec": round(lengths[max(timed)] / time[max(timed)], 1) if timed else None,
    }


def run_from_wandb(
    config: dict[str, Any], summary: dict[str, Any], history: Iterable[dict[str, Any]], name: str = ""
) -> RunData:
    """A run from what wandb keeps: its config (flat slot keys plus the resolved config), its summary
    (which holds ``status``) and its history rows. Pure, so it is tested on an offline run."""
    metrics = metrics_from_history(history)
    model, sweep = config.get("model") or {}, config.get("sweep") or {}
    tune = {key: _select(config, key) for key in sweep.get("tune") or []}
    base = _arm_name(config.get("arm") or sweep.get("arm"), name, config.get("seed"))
    return RunData(
        arm=cell(base, tune),
        base_arm=base,
        tune=tune,
        margin=sweep.get("margin"),
        seed=config.get("seed"),
        status=summary.get("status") or "running",
        name=name,
        baseline=sweep.get("baseline"),
        preset=config.get("preset"),
        choices={k: v["name"] for k, v in model.items() if isinstance(v, dict) and "name" in v},
        flags=config.get("flags") or {},
        sizes={k: model[k] for k in SIZES if k in model},
        n_params=config.get("n_params"),
        max_steps=(config.get("trainer") or {}).get("max_steps"),
        command=config.get("command"),
        error=summary.get("error"),
        wall_time_s=_number(summary.get("_runtime")),
        metrics=metrics,
        **record_fields(metrics),
    )


def _select(config: dict[str, Any], key: str) -> Any:
    """``optim.lr`` from a nested config dict."""
    node: Any = config
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


# -- loaders --------------------------------------------------------------------------------------
def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: unreadable ({e}); expected the JSON that ablate-train writes") from None


def _summary_paths(root: Path) -> list[Path]:
    """Every run's summary below ``root``, except earlier runs kept aside in ``replaced-*`` folders."""
    paths = sorted(root.rglob(SUMMARY))
    return [p for p in paths if not any(part.startswith("replaced-") for part in p.relative_to(root).parts)]


def _hydra_overrides(root: Path) -> list[str]:
    """Hydra's own overrides of the sweep (``-m`` shows as ``hydra.mode=MULTIRUN``), from multirun.yaml."""
    import yaml

    try:
        saved = yaml.safe_load((root / MULTIRUN).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return []
    return list(((saved.get("hydra") or {}).get("overrides") or {}).get("hydra") or [])


def full_command(command: str, hydra_overrides: Sequence[str]) -> str:
    """sweep.json's command plus the Hydra overrides it leaves out, so that it reruns the sweep."""
    head, _, rest = command.partition(" ")
    extra = [o for o in hydra_overrides if o != "hydra.mode=MULTIRUN" and o not in command.split()]
    multirun = "hydra.mode=MULTIRUN" in hydra_overrides and "-m" not in command.split()
    return " ".join([head, *["-m"] * multirun, *filter(None, [rest]), *extra])


def load_local(sweep_dir: str | Path) -> Sweep:
    """A sweep from its folder: ``sweep.json`` (the plan) and every run's ``summary.json``/``metrics.csv``."""
    root = Path(sweep_dir)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder; give a sweep's folder (the one holding {PLAN})")
    plan = _read_json(root / PLAN) if (root / PLAN).is_file() else {}
    runs = []
    for path in _summary_paths(root):
        metrics = path.with_name(METRICS)
        runs.append(run_from_files(_read_json(path), metrics.read_text(encoding="utf-8") if metrics.is_file() else ""))
    jobs = plan.get("jobs") or []
    planned = [(cell(str(job["arm"]), job.get("point") or {}), job.get("seed")) for job in jobs]
    cells = {cell(str(j["arm"]), j["point"]): (str(j["arm"]), point_label(j["point"])) for j in jobs if j.get("point")}
    if not runs and not planned:
        raise DataError(f"{root}: no runs in it (no {SUMMARY} below it, no planned jobs in a {PLAN})")
    command = plan.get("command") or (runs[0].command if len(runs) == 1 else None)
    return Sweep(
        name=plan.get("name") or root.resolve().name,
        runs=runs,
        planned=planned,
        baseline=plan.get("baseline") or next((r.baseline for r in runs if r.baseline), None),
        command=full_command(command, _hydra_overrides(root)) if command else None,
        commands=[full_command(c, _hydra_overrides(root)) for c in plan.get("commands") or []],
        cells={**cells, **_cells(runs)},
        tune=plan.get("tune") or _grid(runs),
        margin=plan.get("margin", next((r.margin for r in runs if r.margin is not None), None)),
    )


def _cells(runs: Sequence[RunData]) -> dict[str, tuple[str, str]]:
    return {r.arm: (r.base_arm, point_label(r.tune)) for r in runs if r.tune}


def _grid(runs: Sequence[RunData]) -> dict[str, list[float]]:
    """The tuned keys and their values, from the runs (where no plan says it)."""
    keys = list(dict.fromkeys(k for r in runs for k in r.tune))
    return {k: sorted({r.tune[k] for r in runs if k in r.tune}) for k in keys}


def load_wandb(path: str, group: str) -> Sweep:
    """A sweep from the wandb public API: the runs of ``path`` (entity/project) in ``group``."""
    if path.count("/") != 1:
        raise ConfigError(f"--wandb {path!r}: give ENTITY/PROJECT, e.g. my-team/ablate")
    import wandb

    try:
        found = wandb.Api().runs(path, filters={"group": group})
        runs = [
            run_from_wandb(
                dict(r.config), {"status": _state_status(r.state), **dict(r.summary.items())}, r.scan_history(), r.name
            )
            for r in found
        ]
    except (wandb.errors.Error, ValueError) as e:
        raise DataError(f"cannot read wandb runs of {path} group {group!r}: {e}") from None
    if not runs:
        raise DataError(f"no runs in wandb project {path} with group {group!r}; the group is the sweep's name")
    baseline = next((r.baseline for r in runs if r.baseline), None)
    margin = next((r.margin for r in runs if r.margin is not None), None)
    return Sweep(name=group, runs=runs, baseline=baseline, tune=_grid(runs), margin=margin, cells=_cells(runs))


def _state_status(state: str) -> str:
    """A run's status when it never recorded one (it crashed before the end): from wandb's state."""
    return "running" if state == "running" else "failed"


# -- statistics -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Spread:
    """Mean, sample standard deviation and 95% t-interval of the mean over seeds (None where undefined)."""

    n: int
    mean: float | None = None
    std: float | None = None
    ci: tuple[float, float] | None = None


def spread(values: Sequence[float]) -> Spread:
    """Describe replicates; the CI uses the t-distribution with n - 1 degrees of freedom."""
    n = len(values)
    if n == 0:
        return Spread(0)
    mean = float(np.mean(values))
    if n == 1:
        return Spread(1, mean)
    std = float(np.std(values, ddof=1))
    if std == 0:
        return Spread(n, mean, 0.0, (mean, mean))
    low, high = stats.t.interval(LEVEL, n - 1, loc=mean, scale=stats.sem(values))
    return Spread(n, mean, std, (float(low), float(high)))


def reference_arm(arm: str, arms: Sequence[str], baseline: str | None) -> str | None:
    """``<parent>+<change>`` is compared with ``<parent>`` when that is an arm; anything else with the
    baseline; the baseline with nothing. Extra swept keys after a space (``gpt2+norm=post lr=0.001``)
    stay on the parent's side (``gpt2 lr=0.001``)."""
    if arm == baseline:
        return None
    head, sep, tail = arm.partition(" ")
    for plus in reversed([m.start() for m in re.finditer(r"\+", head)]):
        parent = head[:plus] + sep + tail
        if parent in arms:
            return parent
    return baseline


def base_arms(sweep: Sweep) -> list[str]:
    """The arms without their grid points, in order (a sweep without a tuned grid: its arms)."""
    return list(dict.fromkeys(sweep.cells[a][0] if a in sweep.cells else a for a in arm_order(sweep)))


def reference_of(sweep: Sweep, arm: str, arms: Sequence[str], baseline: str | None) -> str | None:
    """The row ``arm`` is compared with; in a tuned sweep, its arm's reference at the same grid point."""
    if arm not in sweep.cells:
        return reference_arm(arm, arms, baseline)
    base, point = sweep.cells[arm]
    ref = reference_arm(base, base_arms(sweep), baseline)
    return None if ref is None else " ".join(filter(None, [ref, point]))


def find_arm(requested: str | None, arms: Sequence[str]) -> str | None:
    """The arm named ``requested``, the order of its ``key=value`` words aside; None if there is none."""
    words = sorted((requested or "").split())
    return next((arm for arm in arms if arm == requested or sorted(arm.split()) == words), None)


def resolve_baseline(requested: str | None, arms: Sequence[str]) -> str | None:
    """The arm named ``requested``, else the first arm (a sweep without a baseline compares with it)."""
    return find_arm(requested, arms) or (arms[0] if arms else None)


@dataclass(frozen=True)
class ArmStats:
    """One row of the arms table."""

    arm: str
    planned: int
    done: int
    diverged: int
    failed: int
    final: Spread
    best: Spread
    n_params: tuple[int, ...]
    tokens_per_sec: float | None
    delta: Comparison | None


@dataclass(frozen=True)
class Missing:
    """A planned or started run with no completed/diverged result."""

    arm: str
    seed: int | None
    status: str  # failed | running | not started
    error: str | None = None


def arm_order(sweep: Sweep) -> list[str]:
    """Arms in the order the sweep planned them, then any others in the order found."""
    return list(dict.fromkeys([a for a, _ in sweep.planned] + [r.arm for r in sweep.runs]))


def latest_runs(runs: Sequence[RunData]) -> list[RunData]:
    """One record per (arm, seed): a finished one over a failed or unfinished attempt."""
    chosen: dict[tuple[str, Any], RunData] = {}
    for i, run in enumerate(runs):
        key = (run.arm, run.seed if run.seed is not None else f"#{i}")
        if key not in chosen or run.status in FINISHED or chosen[key].status not in FINISHED:
            chosen[key] = run
    return list(chosen.values())


def _seeded_finals(runs: Iterable[RunData]) -> tuple[list[float], list[int | None]]:
    """The completed runs' final losses and their seeds, in the same order."""
    done = [r for r in runs if r.status == "completed" and r.val_loss_final is not None]
    return [r.val_loss_final for r in done], [r.seed for r in done]


def arm_stats(sweep: Sweep, baseline: str | None) -> list[ArmStats]:
    """The arms table: counts, final and best validation loss over seeds, and the comparison with each
    reference (paired over shared seeds, else Welch), the family corrected as ``sweep.correction`` says."""
    runs = latest_runs(sweep.runs)
    arms = arm_order(sweep)
    by_arm = {a: [r for r in runs if r.arm == a] for a in arms}
    rows = []
    for arm in arms:
        own = by_arm[arm]
        finals, seeds = _seeded_finals(own)
        ref = reference_of(sweep, arm, arms, baseline)
        ref_finals, ref_seeds = _seeded_finals(by_arm[ref]) if ref else ([], [])
        completed = [r for r in own if r.status == "completed"]
        speeds = [r.tokens_per_sec for r in completed if r.tokens_per_sec is not None]
        rows.append(ArmStats(
            arm=arm,
            planned=len({s for a, s in sweep.planned if a == arm} | {r.seed for r in own}),
            done=sum(r.status in FINISHED for r in own),
            diverged=sum(r.status == "diverged" for r in own),
            failed=sum(r.status == "failed" for r in own),
            final=spread(finals),
            best=spread([r.val_loss_best for r in completed if r.val_loss_best is not None]),
            n_params=tuple(sorted({r.n_params for r in own if r.n_params is not None})),
            tokens_per_sec=float(np.mean(speeds)) if speeds else None,
            delta=compare(finals, ref_finals, ref, margin(sweep), seeds, ref_seeds) if finals and ref_finals else None,
        ))
    adjusted = iter(adjust([r.delta for r in rows if r.delta is not None], sweep.correction))
    return [replace(r, delta=next(adjusted)) if r.delta is not None else r for r in rows]


def margin(sweep: Sweep) -> float:
    """The sweep's practical margin in nats, or the default the report states."""
    return MARGIN if sweep.margin is None else float(sweep.margin)


def missing_runs(sweep: Sweep) -> list[Missing]:
    """Planned runs without a completed or diverged result, and started runs that did not finish."""
    runs = {(r.arm, r.seed): r for r in latest_runs(sweep.runs)}
    keys = list(dict.fromkeys(sweep.planned + list(runs)))
    out = []
    for arm, seed in keys:
        run = runs.get((arm, seed))
        if run is None:
            out.append(Missing(arm, seed, "not started"))
        elif run.status not in FINISHED:
            out.append(Missing(arm, seed, run.status, run.error))
    return out


# -- factorial designs ----------------------------------------------------------------------------
_PAIR = re.compile(r"([A-Za-z_][\w.]*)=(\S+)")


def label_levels(arm: str) -> dict[str, str]:
    """``norm=pre lr=0.001`` -> {"norm": "pre", "lr": "0.001"}; {} for labels of another form."""
    matches = [_PAIR.fullmatch(word) for word in arm.split()]
    return dict(m.groups() for m in matches) if matches and all(matches) else {}


@dataclass(frozen=True)
class Design:
    """Axes that vary across the sweep's runs, and the mean final loss of each combination of levels."""

    axes: dict[str, list[str]]
    cells: dict[tuple[str, ...], float]
    # every completed run: its level per axis, final loss, seed and arm (for the two-level regression)
    observations: tuple[tuple[dict[str, str], float, Any, str], ...] = ()

    @property
    def two_level(self) -> bool:
        return all(len(levels) == 2 for levels in self.axes.values())

    @property
    def size(self) -> int:
        return math.prod(len(levels) for levels in self.axes.values())

    @property
    def complete(self) -> bool:
        return len(self.cells) == self.size


def factorial_design(runs: Sequence[RunData]) -> Design | None:
    """The design over every key (slot choices, architecture flags and ``key=value`` arm labels) that varies
    across runs; None when fewer than two vary. Flags count, so that runs differing only in, say, ``bias``
    are never pooled into one cell."""
    labels = [label_levels(r.arm) for r in runs]
    # the labels' order first, their values win
    levels = [{**lb, **r.choices, **{k: str(v) for k, v in r.flags.items()}, **lb} for r, lb in zip(runs, labels)]
    if not levels:
        return None
    common = [k for k in levels[0] if all(k in lv for lv in levels)]
    axes = {k: list(dict.fromkeys(lv[k] for lv in levels)) for k in common}
    axes = {k: v for k, v in axes.items() if len(v) > 1}
    if len(axes) < 2:
        return None
    cells: dict[tuple[str, ...], list[float]] = {}
    observations = []
    for run, lv in zip(runs, levels):
        if run.status == "completed" and run.val_loss_final is not None:
            cells.setdefault(tuple(lv[k] for k in axes), []).append(run.val_loss_final)
            observations.append(({k: lv[k] for k in axes}, run.val_loss_final, run.seed, run.arm))
    return Design(axes, {cell: float(np.mean(v)) for cell, v in cells.items()}, tuple(observations))


def design_effects(design: Design | None, baseline: str | None, margin_: float,
                   correction: str) -> tuple[list[Comparison], dict[str, str]]:
    """A two-level design's main effects and two-way interactions, each from the baseline arm's level (else the
    first level seen) to the other, corrected as one family; empty when an axis has other than two levels or
    the model is not estimable from the runs."""
    if design is None or not design.two_level or not design.observations:
        return [], {}
    levels, y, seeds, arms = zip(*design.observations)
    low = next((lv for lv, arm in zip(levels, arms) if arm == baseline), {k: v[0] for k, v in design.axes.items()})
    effects = two_level_effects(levels, y, seeds, low, margin_)
    return (adjust(effects, correction), low) if effects else ([], {})


def _margin(design: Design, fixed: dict[int, str]) -> float:
    """Mean of the cell means whose levels match ``fixed`` (axis index -> level)."""
    return float(np.mean([m for cell, m in design.cells.items() if all(cell[i] == lv for i, lv in fixed.items())]))


def main_effects(design: Design) -> dict[str, dict[str, float]]:
    """Each level's mean final loss, averaged over the other axes, minus the grand mean."""
    grand = _margin(design, {})
    return {
        axis: {level: _margin(design, {i: level}) - grand for level in levels}
        for i, (axis, levels) in enumerate(design.axes.items())
    }


def interactions(design: Design, top: int = 5) -> list[tuple[str, str, str, str, float]]:
    """The largest two-way interactions (axis a, level a, axis b, level b, cell − level means + grand)."""
    grand, axes, out = _margin(design, {}), list(design.axes.items()), []
    for (i, (a, levels_a)), (j, (b, levels_b)) in combinations(enumerate(axes), 2):
        for la in levels_a:
            for lb in levels_b:
                value = _margin(design, {i: la, j: lb}) - _margin(design, {i: la}) - _margin(design, {j: lb}) + grand
                out.append((a, la, b, lb, value))
    return sorted(out, key=lambda row: -abs(row[4]))[:top]


# -- the report -----------------------------------------------------------------------------------
@dataclass
class Report:
    """Everything the README says, computed once from a :class:`Sweep`."""

    sweep: Sweep
    baseline: str | None
    arms: list[ArmStats]
    missing: list[Missing]
    design: Design | None
    tuned_arms: list[TunedArm] = field(default_factory=list)
    tuned: list[TunedComparison] = field(default_factory=list)
    effects: list[Comparison] = field(default_factory=list)  # a two-level design's effects
    low: dict[str, str] = field(default_factory=dict)  # each axis's reference level (the baseline's)

    @classmethod
    def build(cls, sweep: Sweep) -> Report:
        baseline = resolve_baseline(sweep.baseline, base_arms(sweep))
        runs = latest_runs(sweep.runs)
        design = None if sweep.tune else factorial_design(runs)  # a tuned key is not a factorial axis
        report = cls(sweep, baseline, arm_stats(sweep, baseline), missing_runs(sweep), design)
        report.effects, report.low = design_effects(design, baseline, margin(sweep), sweep.correction)
        if len(sweep.tune) == 1:
            report.tuned_arms, report.tuned = tuning(sweep, runs)
        return report


def tuning(sweep: Sweep, runs: Sequence[RunData]) -> tuple[list[TunedArm], list[TunedComparison]]:
    """Each arm's curve over the tuned grid, and each arm against its reference at both optima."""
    key, grid = next(iter(sweep.tune.items()))
    grid = sorted(float(v) for v in grid)
    names = list(dict.fromkeys(r.base_arm for r in runs if r.base_arm))
    points = {a: Points(a, {}, frozenset()) for a in names}
    for r in runs:
        if r.base_arm not in points or key not in r.tune or r.seed is None:
            continue
        value = float(r.tune[key])
        if r.status == "completed" and r.val_loss_final is not None:
            points[r.base_arm].losses.setdefault(r.seed, {})[value] = r.val_loss_final
        elif r.status == "diverged":
            points[r.base_arm] = Points(r.base_arm, points[r.base_arm].losses,
                                        points[r.base_arm].diverged | {(r.seed, value)})
    arms = [tuned_arm(points[a], grid) for a in names]
    baseline = find_arm(sweep.baseline, names) or (names[0] if names else None)
    by_name = {a.arm: a for a in arms}
    pairs = [(a, by_name[reference_arm(a.arm, names, baseline)]) for a in arms
             if a.arm != baseline and reference_arm(a.arm, names, baseline) in by_name]
    pairs = [(a, ref) for a, ref in pairs if a.fit is not None and ref.fit is not None]
    return arms, [compare_tuned(a, ref, margin(sweep), len(pairs)) for a, ref in pairs]


def _loss(x: float | None) -> str:
    return "—" if x is None else f"{x:.4f}"


def _signed(x: float) -> str:
    return f"{x:+.4f}"


def _p(p: float | None) -> str:
    return "—" if p is None else (f"{p:.4f}" if p >= 1e-4 else f"{p:.1e}")


def _ci(ci: tuple[float, float] | None, fmt: Any = _loss) -> str:
    return "—" if ci is None else f"[{fmt(ci[0])}, {fmt(ci[1])}]"


def _mean_std(s: Spread) -> str:
    return _loss(s.mean) if s.std is None else f"{_loss(s.mean)} ± {_loss(s.std)}"


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def arms_table(arms: Sequence[ArmStats]) -> str:
    """The arms table in Markdown, losses to 4 decimals."""
    header = ["arm", "seeds done/planned", "diverged", "failed", "final val loss (mean ± std)", "95% CI",
              "best val loss (mean ± std)", "reference", "Δ final", "95% CI of Δ", "test", "p", "p adj.",
              "verdict", "detectable Δ (80% power)", "parameters", "tokens/s"]
    rows = []
    for a in arms:
        d = a.delta
        rows.append([
            f"`{a.arm}`", f"{a.done}/{a.planned}", a.diverged, a.failed, _mean_std(a.final), _ci(a.final.ci),
            _mean_std(a.best), f"`{d.reference}`" if d else "—", _signed(d.diff) if d else "—",
            _ci(d.ci, _signed) if d else "—", d.test if d else "—", _p(d.p) if d else "—",
            _p(d.p_adj) if d else "—", _verdict(d) if d else "—", f"±{_loss(d.mde)}" if d and d.mde else "—",
            "–".join(f"{n:,}" for n in a.n_params) or "—",
            "—" if a.tokens_per_sec is None else f"{a.tokens_per_sec:,.0f}",
        ])
    return _table(header, rows)


def _verdict(d: Comparison) -> str:
    """The verdict in the words the findings use: better, worse, equivalent within ±margin, inconclusive."""
    if not d.tested:
        return "untested"
    return f"equivalent within ±{d.margin:g}" if d.verdict == "equivalent" else d.verdict


def _listed(arms: Sequence[ArmStats], baseline: str | None, limit: int = 8) -> str:
    """The comparisons of the first ``limit`` arms (largest Δ first); the rest are counted, not listed."""
    text = "; ".join(_comparison(a, baseline) for a in arms[:limit])
    return text + (f"; and {len(arms) - limit} more (see the table)" if len(arms) > limit else "")


def _comparison(a: ArmStats, baseline: str | None) -> str:
    d = a.delta
    versus = "" if d.reference == baseline else f" vs `{d.reference}`"
    return f"`{a.arm}`{versus} by {_signed(d.diff)} (95% CI {_ci(d.ci, _signed)}, adjusted p = {_p(d.p_adj)})"


def swaps(arms: Sequence[ArmStats]) -> dict[str, tuple[ArmStats, ArmStats]]:
    """Settings changed in both directions between two arms, keyed by setting: ``P+key=<Q's value>``
    and ``Q+key=<P's value>``, each compared with its own parent (as ``seed_to_gpt2`` is built)."""
    by_key: dict[str, list[ArmStats]] = {}
    for a in arms:
        head = a.arm.split(" ")[0]
        if a.delta is None or "+" not in head or not a.delta.tested:
            continue
        parent, change = head.rsplit("+", 1)
        if a.delta.reference.split(" ")[0] == parent:
            by_key.setdefault(change.partition("=")[0], []).append(a)
    return {k: (v[0], v[1]) for k, v in by_key.items() if len(v) == 2 and v[0].delta.reference != v[1].delta.reference}


def _change(a: ArmStats) -> str:
    parent, change = a.arm.split(" ")[0].rsplit("+", 1)
    return (f"in `{parent}`, `{change}` changes the loss by {_signed(a.delta.diff)} "
            f"({_verdict(a.delta)}, adjusted p = {_p(a.delta.p_adj)})")


def plain_words(report: Report) -> str:
    """One line per setting changed in both directions: does it matter, which value wins, by how much."""
    lines = []
    pairs = sorted(swaps(report.arms).items(), key=lambda kv: -max(abs(a.delta.diff) for a in kv[1]))
    for key, (a, b) in pairs:
        sig_a, sig_b = a.delta.verdict in ("better", "worse"), b.delta.verdict in ("better", "worse")
        if sig_a and sig_b and (a.delta.diff > 0) != (b.delta.diff > 0):
            worse = a if a.delta.diff > 0 else b  # the arm that took on the worse value
            value = worse.arm.split(" ")[0].rsplit("=", 1)[1]
            lines.append(f"- **`{key}` matters**: `{value}` is worse whichever model it goes into: "
                         f"{_change(a)}; {_change(b)}.")
        elif sig_a and sig_b:
            lines.append(f"- **`{key}` matters, but which value is better depends on the rest of the model**: "
                         f"{_change(a)}; {_change(b)}.")
        elif sig_a or sig_b:
            hit, other = (a, b) if sig_a else (b, a)
            lines.append(f"- **`{key}` matters in one direction only**: {_change(hit)}; but {_change(other)}.")
        elif a.delta.verdict == b.delta.verdict == "equivalent":
            lines.append(f"- **`{key}` makes no difference beyond the margin**, either way: {_change(a)}; "
                         f"{_change(b)}.")
        else:
            lines.append(f"- **`{key}` is not decided**: neither direction is shown different, nor both equivalent: "
                         f"{_change(a)}; {_change(b)}.")
    if not lines:
        return ""
    by_name = {a.arm: a for a in report.arms}
    heads = [
        f"`{a.arm}` ends at {_loss(a.final.mean)} and `{a.delta.reference}` at "
        f"{_loss(by_name[a.delta.reference].final.mean)}: {_signed(a.delta.diff)} (95% CI {_ci(a.delta.ci, _signed)}, "
        f"{_verdict(a.delta)}, adjusted p = {_p(a.delta.p_adj)}, {a.final.n} seeds each)."
        for a in report.arms if "+" not in a.arm and a.delta is not None and a.delta.tested
    ]
    return " ".join([*heads, "Setting by setting, each changed in both directions (final validation loss over the "
                     f"whole split, lower is better; {rule(report)}):"]) + "\n\n" + "\n".join(lines)


def rule(report: Report) -> str:
    """How the verdicts were reached, in one clause."""
    method = {"holm": "Holm–Bonferroni", "bh": "Benjamini–Hochberg"}[report.sweep.correction]
    tests = sorted({a.delta.test for a in report.arms if a.delta is not None and a.delta.tested})
    return (f"{' or '.join(tests) or 'paired or Welch t'}-tests on the final validation loss over seeds, "
            f"{method}-adjusted over the {sum(1 for a in report.arms if a.delta and a.delta.tested)} comparisons; "
            f"*better*/*worse*: adjusted p < {ALPHA}; *equivalent within ±{margin(report.sweep):g}*: both one-sided "
            f"tests against the margin adjusted p < {ALPHA}; otherwise *inconclusive*")


def findings(report: Report) -> str:
    """The Findings paragraph, in words, from the numbers alone (so regenerating it gives the same text)."""
    arms, missing = report.arms, report.missing
    planned = sum(a.planned for a in arms)
    text = [
        f"{sum(a.done for a in arms)} of {planned} planned runs finished; {sum(a.diverged for a in arms)} diverged "
        f"and {sum(a.failed for a in arms)} failed."
    ]
    if missing:
        text.append(f"**Partial sweep:** {len(missing)} runs have no result (listed under Missing runs).")
    tested = sorted((a for a in arms if a.delta and a.delta.tested), key=lambda a: -abs(a.delta.diff))
    groups = {v: [a for a in tested if a.delta.verdict == v] for v in ("worse", "better", "equivalent", "inconclusive")}
    names = [a.arm for a in arms]
    untested = [a for a in arms if a.final.n and reference_of(report.sweep, a.arm, names, report.baseline) is not None
                and (a.delta is None or not a.delta.tested)]
    text.append(f"Verdicts ({rule(report)}; the reference is the baseline `{report.baseline}` unless named):")
    words = {"worse": "**Worse**", "better": "**Better**",
             "equivalent": f"**Equivalent within ±{margin(report.sweep):g}**", "inconclusive": "**Inconclusive**"}
    for verdict, group in groups.items():
        if group:
            text.append(f"{words[verdict]}: {_listed(group, report.baseline)}.")
    if not tested:
        text.append("none tested.")
    if groups["inconclusive"]:
        text.append(power_sentence(report, groups["inconclusive"]))
    if untested:
        names = ", ".join(f"`{a.arm}` ({a.final.n} completed" + f", {a.diverged} diverged" * bool(a.diverged) + ")"
                          for a in untested)
        text.append(f"Not tested (fewer than two completed seeds on a side, or no variance): {names}.")
    if report.tuned_arms:
        text.append(summary_sentence(report.tuned_arms, report.tuned, next(iter(report.sweep.tune))))
    if report.effects:
        decided = [e for e in report.effects if e.verdict != "inconclusive"]
        listed = "; ".join(f"`{e.reference}` {_signed(e.diff)} ({_verdict(e)})" for e in decided) or "none decided"
        text.append(f"Factorial effects ({len(report.effects)}, one family; see Factorial effects): {listed}; "
                    f"{len(report.effects) - len(decided)} inconclusive.")
    elif report.design is not None and report.design.complete:
        ranges = {axis: max(e.values()) - min(e.values()) for axis, e in main_effects(report.design).items()}
        axis = max(ranges, key=ranges.get)
        text.append(f"Of the factorial axes, `{axis}` has the largest main effect (range {_loss(ranges[axis])}).")
    return " ".join(text)


def power_sentence(report: Report, inconclusive: Sequence[ArmStats]) -> str:
    """What the inconclusive comparisons could have seen, and the seeds (and command) that would decide them."""
    mdes = [a.delta.mde for a in inconclusive if a.delta.mde]
    needed = [a.delta.seeds_needed for a in inconclusive]
    text = (f"With these seeds the inconclusive comparisons could detect, at 80% power, effects of "
            f"±{_loss(min(mdes))} to ±{_loss(max(mdes))} nats" if mdes else "")
    decidable = [n for n in needed if n is not None]
    if decidable:
        seeds = sorted({r.seed for r in report.sweep.runs if isinstance(r.seed, int)})
        target = max(decidable)
        command = more_seeds_command(report.sweep, seeds, target)
        text += (f"; if the true differences are the observed ones, {min(decidable)} to {target} seeds per arm "
                 f"would decide {len(decidable)} of the {len(inconclusive)} (see the table)")
        if command:
            text += f", and this adds the seeds (relaunching skips the finished runs): `{command}`"
    if len(decidable) < len(inconclusive):
        text += (f"; {len(inconclusive) - len(decidable)} would need over 100 seeds: their differences are too close "
                 f"to the margin to decide")
    return text + "." if text else ""


def more_seeds_command(sweep: Sweep, seeds: Sequence[int], target: int) -> str | None:
    """The sweep's command with the seed list extended to ``target`` seeds per arm, or None without a command."""
    if not sweep.command or target <= len(seeds):
        return None
    extra = list(range(max(seeds, default=0) + 1, max(seeds, default=0) + 1 + target - len(seeds)))
    words = [w for w in sweep.command.split() if not w.startswith("seed=")]
    return " ".join([*words, "seed=" + ",".join(map(str, [*seeds, *extra]))])


def reproduce(report: Report) -> str:
    """The Reproduce section: the sweep's command, the run length and sizes, and this report's command."""
    runs = report.sweep.runs
    steps = sorted({r.max_steps for r in runs if r.max_steps is not None})
    sizes = list(dict.fromkeys(", ".join(f"{k}={v}" for k, v in r.sizes.items()) for r in runs if r.sizes))
    command = "\n".join(report.sweep.commands) or report.sweep.command
    lines = ["## Reproduce", ""]
    lines += [f"```bash\n{command}\n```"] if command else ["The sweep's command is not recorded here (wandb keeps no "
                                                           "sweep.json); each run's config holds its settings."]
    lines += ["", f"Run length: {' / '.join(map(str, steps)) or 'unknown'} steps (`max_steps`). "
              f"Model sizes: {'; '.join(sizes) or 'unknown'}."]
    versions = sorted({r.version for r in runs if r.version})
    if versions:
        lines += ["", f"Code: ablate {', '.join(versions)} (version+commit, from the runs' records)."]
    if command and "hydra/launcher=parallel" in command:
        lines += ["", "Runs went two at a time on one machine (`hydra/launcher=parallel`, the cores split between "
                      "them), so tokens/s is per run while sharing the machine; the losses do not depend on it."]
    lines += ["", "This report:", "", f"```bash\n{report.sweep.source}\n```"]
    return "\n".join(lines)


def effects_section(report: Report) -> str:
    """A two-level design's effects table: each main effect and two-way interaction with its verdict."""
    design, low = report.design, report.low
    high = {axis: next(v for v in levels if v != low[axis]) for axis, levels in design.axes.items()}
    n_cells = len(design.cells)
    kind = "full factorial" if design.complete else f"fraction ({n_cells} of {design.size} combinations)"
    rows = []
    for e in report.effects:
        if " × " in e.reference:
            a, b = e.reference.split(" × ")
            what = f"`{a}` × `{b}`"
        else:
            what = f"`{e.reference}`: `{low[e.reference]}` → `{high[e.reference]}`"
        rows.append([what, _signed(e.diff), _ci(e.ci, _signed), _ci(e.ci_adj, _signed), _p(e.p), _p(e.p_adj),
                     _verdict(e), f"±{_loss(e.mde)}" if e.mde else "—"])
    m = len(report.effects)
    return "\n".join([
        "## Factorial effects", "",
        f"A two-level {kind} over {len(design.axes)} axes, {len(design.observations)} completed runs. Effects by "
        f"least squares on ±1-coded levels with one intercept per seed (a seed fixes the data order for every cell, "
        f"so it is a block); {report.effects[0].df:.0f} residual degrees of freedom. A main effect is the mean change "
        f"in final validation loss from the baseline's level to the other; an interaction A × B is half the "
        f"difference between A's effect at B's two levels (positive: the two changes together cost more than each "
        f"alone). The {m} effects are one family: adjusted p as the arms' table, the second interval at the "
        f"Bonferroni level {100 * (1 - ALPHA / m):.2f}%.", "",
        _table(["effect", "Δ", "95% CI", "corrected CI", "p", "p adj.", "verdict", "detectable Δ (80% power)"], rows),
    ])


def factorial_section(report: Report) -> str:
    """Main effects and the largest two-way interactions, for a design that covers its cross product (any number
    of levels), or the effects table of a two-level design (full or fractional)."""
    design = report.design
    if design is None:
        return ""
    if report.effects:
        return effects_section(report)
    lines = ["## Factorial effects", ""]
    if not design.complete:
        return "\n".join(lines + [
            f"The runs vary {len(design.axes)} axes ({', '.join(f'`{a}`' for a in design.axes)}) but only "
            f"{len(design.cells)} of their {design.size} combinations have completed runs, so no effects are estimated."
        ])
    effects = main_effects(design)
    ranges = {axis: max(e.values()) - min(e.values()) for axis, e in effects.items()}
    grand = _margin(design, {})
    rows = [[f"`{axis}`", _loss(ranges[axis]), f"`{level}`", _signed(value)]
            for axis in sorted(effects, key=lambda a: -ranges[a]) for level, value in effects[axis].items()]
    lines += [f"Main effects: the mean final validation loss at each level, averaged over the other axes, minus the "
              f"grand mean ({_loss(grand)}); an axis's range is its largest minus its smallest level effect.", "",
              _table(["axis", "range", "level", "effect"], rows), "",
              "Largest two-way interactions (cell mean − level means + grand mean):", "",
              _table(["axes", "levels", "interaction"],
                     [[f"`{a}` × `{b}`", f"`{la}` × `{lb}`", _signed(v)] for a, la, b, lb, v in interactions(design)])]
    return "\n".join(lines)


def missing_section(missing: Sequence[Missing]) -> str:
    """The runs that have no completed or diverged result, with the error of failed ones."""
    lines = ["## Missing runs", ""]
    if not missing:
        return "\n".join(lines + ["None: every planned run finished (completed or diverged)."])
    rows = [[f"`{m.arm}`", "—" if m.seed is None else m.seed, m.status, m.error or ""] for m in missing]
    table = _table(["arm", "seed", "status", "error"], rows)
    return "\n".join(lines + [f"{len(missing)} runs have no result:", "", table])


PLOT_TEXT = {
    "curves.png": ("Validation loss during training", "validation loss vs step per arm: mean over completed seeds, "
                   "band from the lowest to the highest seed, log scale", "no arm has a completed run with `val/loss`"),
    "deltas.png": ("Δ vs reference", "final validation loss minus the reference arm's (paired over shared seeds, "
                   "else Welch), with its CI at the family's Bonferroni level, coloured by verdict, the margin shaded "
                   "(Holm's step-down verdicts are a little more powerful than that interval: a bar can be coloured "
                   "with its interval just touching 0)",
                   "no arm has a tested Δ (two or more completed seeds on both sides)"),
    "lr.png": ("Final loss vs learning rate", "each arm's final validation loss against the tuned value: seeds as "
               "dots, the quadratic fit in log scale as a line, its optimum as a star, diverged runs as crosses on "
               "the top edge", "no arm has three grid values with every seed completed"),
    "diagnostics.png": ("Diagnostics", "gradient norm and attention entropy per layer at the last logged step, "
                        "mean over completed seeds", "no completed run logged `diag/grad_norm` or `diag/attn_entropy`"),
}


def plots_section(written: Sequence[str], tuned: bool = False) -> str:
    """Each plot embedded by a relative link, or a line saying why it is absent (the learning-rate plot
    only in a tuned sweep)."""
    lines = ["## Plots", ""]
    for name, (title, what, absent) in PLOT_TEXT.items():
        if name == "lr.png" and not tuned:
            continue
        body = f"![{title}]({name})\n\n{what}." if name in written else f"Skipped: {absent}."
        lines += [f"### {title}", "", body, ""]
    return "\n".join(lines).rstrip()


def tuning_section(report: Report) -> str:
    """The tuned analysis, when the sweep tuned one key."""
    if not report.tuned_arms:
        return ""
    key = next(iter(report.sweep.tune))
    return section(report.tuned_arms, report.tuned, key, report.sweep.command, margin(report.sweep))


def render_readme(report: Report, plots: Sequence[str]) -> str:
    """The whole README: title, findings, reproduce, tables, effects, plots, missing runs."""
    note = ""
    if report.sweep.baseline and find_arm(report.sweep.baseline, base_arms(report.sweep)) is None:
        note = f" The baseline `{report.sweep.baseline}` is not an arm here, so arms compare with `{report.baseline}`."
    sections = [
        f"# Sweep report: {report.sweep.name}",
        report.sweep.preface.strip(),
        "## Findings\n\n" + "\n\n".join(filter(None, [plain_words(report), findings(report)])),
        reproduce(report),
        tuning_section(report),
        "## Arms\n\n" + ("In a tuned sweep an arm at one grid value is a row of its own, compared with its reference "
                         "at the same value. " if report.sweep.tune else "") + "One row per arm; its seeds are its "
        "replicates. Δ is the arm's mean final validation loss (whole "
        "validation split, completed seeds) minus its reference's: its parent arm for `<parent>+<change>`, otherwise "
        f"the baseline `{report.baseline}`.{note}\n\n" + arms_table(report.arms),
        factorial_section(report),
        plots_section(plots, bool(report.sweep.tune)),
        missing_section(report.missing),
    ]
    return "\n\n".join(s for s in sections if s) + "\n"


# -- plots ----------------------------------------------------------------------------------------
def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure  # no pyplot: no global state, renders with Agg

    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def _colors(n: int) -> list[Any]:
    """Matplotlib's default cycle for up to 10 arms; evenly spaced colours of a wide colormap beyond."""
    from matplotlib import colormaps

    return [f"C{i}" for i in range(n)] if n <= 10 else list(colormaps["turbo"](np.linspace(0, 1, n)))


def _label_width(labels: Sequence[str]) -> float:
    """Inches that the longest of these labels takes in a small font (long arm names widen the figure)."""
    return 0.5 + 0.06 * max(map(len, labels), default=0)


def _legend_width(labels: Sequence[str]) -> float:
    return (1 + len(labels) // 25) * _label_width(labels)


def _legend(ax: Any, n: int) -> None:
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1), ncols=1 + n // 25)


def _completed_by_arm(report: Report) -> dict[str, list[RunData]]:
    runs = [r for r in latest_runs(report.sweep.runs) if r.status == "completed"]
    return {a.arm: [r for r in runs if r.arm == a.arm] for a in report.arms}


def plot_curves(report: Report, path: Path) -> bool:
    """Validation loss vs step per arm (mean over seeds, min–max band); False when there is none."""
    from matplotlib.ticker import StrMethodFormatter

    by_arm = _completed_by_arm(report)
    fig = _figure(6.5 + _legend_width(list(by_arm)), 5)
    ax = fig.subplots()
    shown = []
    for color, (arm, runs) in zip(_colors(len(by_arm)), by_arm.items()):
        series = [r.metrics["val/loss"] for r in runs if r.metrics.get("val/loss")]
        steps = sorted({s for one in series for s in one})
        if not steps:
            continue
        values = [[one[s] for one in series if s in one] for s in steps]
        mean = [float(np.mean(v)) for v in values]
        ax.plot(steps, mean, color=color, label=arm, marker="." if len(steps) < 20 else None)
        ax.fill_between(steps, [min(v) for v in values], [max(v) for v in values], color=color, alpha=0.2)
        late = [m for s, m in zip(steps, mean) if s >= 0.25 * steps[-1]]
        shown.append((min(min(v) for v in values), max(late)))
    if not shown:
        return False
    low, high = min(s[0] for s in shown), max(s[1] for s in shown)
    ax.set_yscale("log")  # losses fall geometrically early on; a log axis keeps the late gaps visible
    ax.yaxis.set_major_formatter(StrMethodFormatter("{x:.2f}"))
    ax.yaxis.set_minor_formatter(StrMethodFormatter("{x:.2f}"))  # a narrow log range shows minor ticks only
    ax.set_ylim(low * 0.98, high * 1.02 if high > low else low * 1.05)  # the first quarter's high losses are cut
    ax.set(xlabel="step", ylabel="validation loss (fixed batches)", title="Validation loss per arm")
    ax.grid(True, which="both", alpha=0.3)
    _legend(ax, len(shown))
    fig.savefig(path)
    return True


def plot_deltas(report: Report, path: Path) -> bool:
    """One horizontal bar per tested arm: Δ final loss vs its reference with its family-corrected CI, coloured
    by verdict, the equivalence margin shaded."""
    from matplotlib.patches import Patch

    tested = [a for a in report.arms if a.delta is not None and a.delta.ci_adj is not None]
    if not tested:
        return False
    # the reference is named only where it is not the baseline
    labels = [a.arm if a.delta.reference == report.baseline else f"{a.arm} (vs {a.delta.reference})" for a in tested]
    fig = _figure(6.5 + _label_width(labels), 1.2 + 0.3 * len(tested))
    ax = fig.subplots()
    y = np.arange(len(tested))[::-1]
    diffs = [a.delta.diff for a in tested]
    errors = [[d - a.delta.ci_adj[0] for d, a in zip(diffs, tested)],
              [a.delta.ci_adj[1] - d for d, a in zip(diffs, tested)]]
    palette = {"worse": "C3", "better": "C2", "equivalent": "C0", "inconclusive": "C7"}
    ax.barh(y, diffs, xerr=errors, color=[palette[a.delta.verdict] for a in tested], capsize=3)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(y, labels, fontsize="small")
    ax.axvspan(-margin(report.sweep), margin(report.sweep), color="C0", alpha=0.1, linewidth=0)
    ax.legend(handles=[Patch(color=c, label=v) for v, c in palette.items()]
              + [Patch(color="C0", alpha=0.1, label=f"±{margin(report.sweep):g} margin")],
              fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.set(xlabel="Δ final validation loss (lower is better)",
           title=f"Δ vs reference (the baseline unless named), {100 * (1 - ALPHA / len(tested)):.2f}% CI "
                 f"(Bonferroni over {len(tested)})")
    fig.savefig(path)
    return True


def last_layer_values(run: RunData, prefix: str) -> list[float]:
    """``prefix/layer_<i>`` for every layer at the last step that logged them (empty if never logged)."""
    keys = sorted((k for k in run.metrics if k.startswith(prefix + "/layer_")), key=lambda k: int(k.rsplit("_", 1)[1]))
    steps = [s for s in sorted({s for k in keys for s in run.metrics[k]}) if all(s in run.metrics[k] for k in keys)]
    return [run.metrics[k][steps[-1]] for k in keys] if steps else []


def _layer_means(by_arm: dict[str, list[RunData]], prefix: str) -> dict[str, list[float]]:
    """Per arm, the mean over its seeds of ``prefix/layer_<i>`` at each seed's last logged step."""
    out = {}
    for arm, runs in by_arm.items():
        rows = [v for v in (last_layer_values(r, prefix) for r in runs) if v]
        if rows and all(len(v) == len(rows[0]) for v in rows):
            out[arm] = list(np.mean(rows, axis=0))
    return out


def plot_diagnostics(report: Report, path: Path) -> bool:
    """Gradient norm and attention entropy per layer (mean over seeds), one line per arm."""
    from matplotlib.ticker import MaxNLocator

    panels = {"diag/grad_norm": "gradient norm (before clipping)", "diag/attn_entropy": "attention entropy (nats)"}
    by_arm = _completed_by_arm(report)
    data = {prefix: _layer_means(by_arm, prefix) for prefix in panels}
    if not any(data.values()):
        return False
    colors = dict(zip(by_arm, _colors(len(by_arm))))
    fig = _figure(10 + _legend_width(list(by_arm)), 4.5)
    for ax, (prefix, label) in zip(fig.subplots(1, 2), panels.items()):
        for arm, values in data[prefix].items():
            ax.plot(range(len(values)), values, marker="o", color=colors[arm], label=arm)
        if not data[prefix]:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes)
        ax.set(xlabel="layer", ylabel=label, title=label.split(" (")[0] + " per layer")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
    _legend(fig.axes[1] if data["diag/attn_entropy"] else fig.axes[0], len(by_arm))
    fig.savefig(path)
    return True


def write_report(sweep: Sweep, out_dir: str | Path) -> Path:
    """Write README.md and the plots that have data into ``out_dir``; returns the README's path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = Report.build(sweep)
    makers = {"curves.png": plot_curves, "deltas.png": plot_deltas, "diagnostics.png": plot_diagnostics,
              "lr.png": lambda r, path: bool(r.tuned_arms) and plot_lr(r.tuned_arms, next(iter(r.sweep.tune)), path)}
    written = []
    for name, make in makers.items():
        (out / name).unlink(missing_ok=True)  # a plot left from an earlier report would contradict this one
        if make(report, out / name):
            written.append(name)
    atomic_write_text(out / "README.md", render_readme(report, written))
    return out / "README.md"


# -- command line ---------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line: a sweep folder, or a wandb project and group."""
    parser = ArgumentParser(
        prog="ablate-report",
        description="Turn a sweep (finished or not) into README.md with findings, tables and plots.",
    )
    parser.add_argument("sweep_dir", nargs="?", help="the sweep's folder (holding sweep.json and the runs)")
    parser.add_argument("--out", help="where to write the report (default: reports/<sweep name>)")
    parser.add_argument("--baseline", help="the arm to compare the others with (default: the sweep's baseline)")
    parser.add_argument("--wandb", metavar="ENTITY/PROJECT", help="read the runs from wandb instead of SWEEP_DIR")
    parser.add_argument("--group", help="with --wandb: the runs' wandb group (the sweep's name)")
    parser.add_argument("--correction", default="holm", choices=CORRECTIONS,
                        help="multiple-comparison correction: holm (family-wise error, default) or bh (false "
                             "discovery rate, Benjamini-Hochberg)")
    parser.add_argument("--preface", metavar="FILE", help="a Markdown file whose text opens the report (the study's "
                                                          "reading of its numbers, kept beside them)")
    parser.add_argument("--margin", type=float, help="the practical margin in nats (default: the sweep's, else "
                                                     f"{MARGIN})")
    args = parser.parse_args(argv)
    if bool(args.sweep_dir) == bool(args.wandb):
        parser.error("give either SWEEP_DIR or --wandb ENTITY/PROJECT --group NAME")
    if args.wandb and not args.group:
        parser.error("--wandb needs --group NAME (the sweep's name)")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point: one line ``error: ...`` and exit status 2 for anything the user can fix."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    try:
        sweep = load_wandb(args.wandb, args.group) if args.wandb else load_local(args.sweep_dir)
        sweep.source = shlex.join(["ablate-report", *argv])
        sweep.correction = args.correction
        if args.preface:
            try:
                sweep.preface = Path(args.preface).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise ConfigError(f"--preface {args.preface}: cannot read it ({e}); give a UTF-8 Markdown file") \
                    from None
        if args.margin is not None:
            if not args.margin > 0:
                raise ConfigError(f"--margin {args.margin}: give a positive number of nats, e.g. 0.01")
            sweep.margin = args.margin
        if args.baseline:
            arms = base_arms(sweep)
            if find_arm(args.baseline, arms) is None:
                raise ConfigError(f"--baseline {args.baseline!r} is not an arm; choose one of: {', '.join(arms)}")
            sweep.baseline = args.baseline
        readme = write_report(sweep, args.out or Path("reports") / sweep.name.replace("/", "_"))
    except AblateError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(f"Report: {readme}")


if __name__ == "__main__":
    main()

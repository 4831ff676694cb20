"""Arms: which rows a report has, what each is compared with, and the comparisons of the arms table."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy import stats

from ablate.contract import FINISHED, Arm, find_arm, short_key
from ablate.report.compare import MARGIN, Comparison, adjust, compare
from ablate.report.records import RunData, Sweep

LEVEL = 0.95


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


def reference_arm(arm: str, arms: Sequence[str], baseline: str | None,
                  structure: Mapping[str, Arm] | None = None) -> str | None:
    """An arm is compared with its parent (``structure[arm].parent``, as the sweeper derived it: ``gpt2`` for
    ``gpt2+norm=post``) when that is an arm here; anything else with the baseline; the baseline with nothing."""
    if arm == baseline:
        return None
    known = (structure or {}).get(arm)
    parent = known.parent if known is not None else _legacy_parent(arm, arms)
    return parent if parent in arms else baseline


def _legacy_parent(arm: str, arms: Sequence[str]) -> str | None:
    """The parent of an arm whose record predates structured arms (``arm`` a string in summary.json, or a wandb
    run's ``sweep.arm`` alone): only its name says it, so it is read from the name, as reports always did.
    ``<parent>+<change>`` has the parent ``<parent>`` (the longest such prefix that is an arm); extra swept keys
    after a space (``gpt2+norm=post lr=0.001``) stay on the parent's side (``gpt2 lr=0.001``)."""
    head, sep, tail = arm.partition(" ")
    cuts = [i for i, char in enumerate(head) if char == "+"]
    return next((head[:i] + sep + tail for i in reversed(cuts) if head[:i] + sep + tail in arms), None)


@dataclass(frozen=True)
class Change:
    """What an arm changes in its parent, in words: ``norm`` to ``post`` in ``gpt2`` (row ``parent_row``)."""

    parent: str
    parent_row: str  # the row the parent is at: in a tuned sweep, at the same grid point
    key: str  # ``norm``; several keys changed together: ``tie_embeddings lm_head_bias``
    value: str  # ``post``
    text: str  # ``norm=post``


def change_of(sweep: Sweep, row: str) -> Change | None:
    """What the arm of ``row`` changes in its parent; None for an arm that is no change of another."""
    base, point = sweep.cells.get(row, (row, ""))
    known = sweep.arms.get(base)
    if known is not None:
        if known.parent is None or not known.changes:
            return None
        parent, keys = known.parent, [short_key(k) for k in known.changes]
        text = " ".join(f"{k}={v}" for k, v in zip(keys, known.changes.values()))
        return Change(parent, " ".join(filter(None, [parent, point])), " ".join(keys),
                      " ".join(known.changes.values()), text)
    # a record from before arms were structured: only the name says what the arm changes (see _legacy_parent)
    head, _, tail = row.partition(" ")
    if "+" not in head:
        return None
    parent, change = head.rsplit("+", 1)
    return Change(parent, " ".join(filter(None, [parent, tail])), change.partition("=")[0], change.rsplit("=", 1)[-1],
                  change)


def base_arms(sweep: Sweep) -> list[str]:
    """The arms without their grid points, in order (a sweep without a tuned grid: its arms)."""
    return list(dict.fromkeys(sweep.cells[a][0] if a in sweep.cells else a for a in arm_order(sweep)))


def reference_of(sweep: Sweep, arm: str, arms: Sequence[str], baseline: str | None) -> str | None:
    """The row ``arm`` is compared with; in a tuned sweep, its arm's reference at the same grid point."""
    if arm not in sweep.cells:
        return reference_arm(arm, arms, baseline, sweep.arms)
    base, point = sweep.cells[arm]
    ref = reference_arm(base, base_arms(sweep), baseline, sweep.arms)
    return None if ref is None else " ".join(filter(None, [ref, point]))


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


def arm_stats(sweep: Sweep, baseline: str | None) -> tuple[list[ArmStats], list[ArmStats]]:
    """The arms table: counts, final and best validation loss over seeds, and the comparison with each
    reference (paired over shared seeds, else Welch); and the comparisons the sweep declared (``sweep.compare``),
    one more row for each arm named there (in a tuned sweep, at each grid point). Both are one family, corrected
    as ``sweep.correction`` says."""
    runs = latest_runs(sweep.runs)
    arms = arm_order(sweep)
    by_arm = {a: [r for r in runs if r.arm == a] for a in arms}

    def row(arm: str, ref: str | None) -> ArmStats:
        own = by_arm[arm]
        finals, seeds = _seeded_finals(own)
        # a grid value run for one arm alone (an extension past an edge) has no reference there
        ref_finals, ref_seeds = _seeded_finals(by_arm.get(ref, [])) if ref else ([], [])
        completed = [r for r in own if r.status == "completed"]
        speeds = [r.tokens_per_sec for r in completed if r.tokens_per_sec is not None]
        return ArmStats(
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
        )

    rows = [row(arm, reference_of(sweep, arm, arms, baseline)) for arm in arms]
    declared = [row(arm, ref) for arm in arms if (ref := declared_reference(sweep, arm)) in by_arm]
    adjusted = iter(adjust([r.delta for r in rows + declared if r.delta is not None], sweep.correction))
    rows, declared = ([replace(r, delta=next(adjusted)) if r.delta is not None else r for r in part]
                      for part in (rows, declared))
    return rows, declared


def declared_reference(sweep: Sweep, arm: str) -> str | None:
    """The row ``arm`` is compared with by the sweep's declaration (``sweep.compare``), if any; in a tuned sweep,
    the declared arm at the same grid point."""
    base, point = sweep.cells.get(arm, (arm, ""))
    ref = next((ref for name, ref in sweep.compare.items() if find_arm(name, [base])), None)
    ref = find_arm(ref, base_arms(sweep)) if ref else None
    return None if ref is None else " ".join(filter(None, [ref, point]))


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

"""Factorial designs: the axes that vary across a sweep's runs, each level's effect, and for two-level designs
(full or fractional) every main effect and two-way interaction by least squares."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np
from scipy import stats

from ablate.contract import short_key
from ablate.report.compare import MARGIN, Comparison, adjust
from ablate.report.power import ALPHA
from ablate.report.records import RunData


def grid_levels(run: RunData) -> dict[str, str]:
    """The run's values of the swept keys beyond its arm (``{"norm": "pre", "lr": "0.001"}``), by short name."""
    if run.structure is not None:
        return {short_key(k): v for k, v in run.structure.grid.items()}
    return _legacy_levels(run.arm)


def _legacy_levels(arm: str) -> dict[str, str]:
    """A record from before arms were structured holds its grid values only in its arm's name:
    ``norm=pre lr=0.001`` -> {"norm": "pre", "lr": "0.001"}; {} for names of another form."""
    matches = [re.fullmatch(r"([A-Za-z_][\w.]*)=(\S+)", word) for word in arm.split()]
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
    labels = [grid_levels(r) for r in runs]
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


# -- two-level factorial designs -------------------------------------------------------------------
def two_level_effects(levels: Sequence[dict[str, str]], y: Sequence[float], blocks: Sequence[Any],
                      low: dict[str, str], margin: float = MARGIN) -> list[Comparison] | None:
    """Main effects and two-way interactions of a two-level design (full or fractional) by least squares, with
    one fixed effect per block (the seed: it sets data order and initial draw for every cell alike).

    ``levels[i]`` maps each axis to run i's level; ``low`` names each axis's reference level. Coded -1 (low) and
    +1, a main effect is the mean change from the low level to the other, 2β; an interaction AB is 2β_AB, half
    the difference between A's effect at B's two levels. None when the model is not estimable from these runs
    (fewer distinct cells than terms, or aliased terms). Each effect is a :class:`Comparison` named
    ``axis`` or ``a × b``, tested with the residual degrees of freedom."""
    axes = list(low)
    n = len(y)
    main = np.array([[1.0 if lv[a] != low[a] else -1.0 for a in axes] for lv in levels])  # (N, k)
    pairs = [(i, j) for i in range(len(axes)) for j in range(i + 1, len(axes))]
    terms = [*axes, *(f"{axes[i]} × {axes[j]}" for i, j in pairs)]
    effects = np.column_stack([main, *(main[:, i] * main[:, j] for i, j in pairs)]) if pairs else main
    block_ids = list(dict.fromkeys(blocks))
    dummies = np.array([[1.0 if b == k else 0.0 for k in block_ids] for b in blocks])  # an intercept per block
    design = np.column_stack([dummies, effects])
    rank = np.linalg.matrix_rank(design)
    df = n - design.shape[1]
    if rank < design.shape[1] or df < 1:
        return None
    beta, *_ = np.linalg.lstsq(design, np.asarray(y, dtype=float), rcond=None)
    resid = np.asarray(y, dtype=float) - design @ beta
    sigma2 = float(resid @ resid) / df
    cov = sigma2 * np.linalg.inv(design.T @ design)
    seeds = len(block_ids)
    cells = len({tuple(sorted(lv.items())) for lv in levels})
    out = []
    for t, name in enumerate(terms):
        j = len(block_ids) + t
        effect, se = 2 * float(beta[j]), 2 * math.sqrt(cov[j, j])
        if se == 0:
            out.append(Comparison(name, effect, "OLS t", seeds, margin=margin))
            continue
        half = stats.t.ppf(1 - ALPHA / 2, df) * se
        p = 2 * stats.t.sf(abs(effect) / se, df)
        p_equiv = max(stats.t.sf((effect + margin) / se, df), stats.t.cdf((effect - margin) / se, df))
        out.append(Comparison(name, effect, "OLS t", seeds, (effect - half, effect + half), float(p),
                              se * math.sqrt(seeds), float(df), se, float(cells - 1), margin, float(p_equiv)))
    return out

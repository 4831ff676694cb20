"""Arms at their own best learning rate: a tuned sweep's runs as curves of final loss against the tuned
value, one quadratic fit per arm, and comparisons at the reference's best and at each arm's own best.

The input is plain data (:class:`Points`: per arm, seed and grid value, the final loss or a status), so
this module knows nothing of records; :mod:`ablate.report.analysis` builds it and renders what comes back.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ablate.report.curves import (
    CurveFit,
    bootstrap_optimum,
    bootstrap_tuned_delta,
    fit_curve,
    interval_verdict,
    loss_at,
)
from ablate.report.power import ALPHA
from ablate.report.shell import shell_line


@dataclass(frozen=True)
class Points:
    """One arm's runs over the grid: ``losses[seed][value]`` (completed runs), ``diverged`` (seed, value) pairs."""

    arm: str
    losses: dict[int, dict[float, float]]
    diverged: frozenset[tuple[int, float]] = frozenset()


# Past a high-edge optimum whose next value up failed to train, the report bisects (in log) toward that value until
# the two are within this fraction of the grid's step: a quarter of a factor-2 grid is a factor 1.19, as narrow as the
# narrowest 95% interval of a fitted optimum in seed_to_gpt2_tuned (1.18; most span 1.4-1.6). There the optimum is the
# edge of stable training.
BISECT_TO = 0.25


@dataclass(frozen=True)
class TunedArm:
    """An arm's fitted curve over the grid (x is log2 of the tuned value)."""

    arm: str
    grid: tuple[float, ...]
    seeds: tuple[int, ...]
    curves: np.ndarray  # (seeds, grid): final loss, NaN where the run diverged or has no result
    diverged: frozenset[tuple[int, float]]
    fit: CurveFit | None
    best_ci: tuple[tuple[float, float], tuple[float, float]] | None  # 95% CI of (log2 best value, best loss)

    @property
    def tried(self) -> tuple[float, ...]:
        """The grid values this arm has a result at (completed or diverged): a grid extended for another arm alone
        holds values this one never ran."""
        ran = ~np.isnan(self.curves).all(axis=0) if len(self.curves) else np.zeros(len(self.grid), dtype=bool)
        return tuple(v for v, r in zip(self.grid, ran) if r or any(d == v for _, d in self.diverged))

    @property
    def best_value(self) -> float | None:
        return None if self.fit is None else 2.0**self.fit.best_x

    @property
    def ratio(self) -> float:
        """The grid's step, as the ratio of its two lowest values this arm ran (2 when it ran one)."""
        tried = self.tried
        return tried[1] / tried[0] if len(tried) > 1 else 2.0

    @property
    def failed_above(self) -> float | None:
        """Where the optimum sits at the high edge and the grid goes past it: the nearest value above, where a run
        diverged or collapsed (so it is out of the fit); else None."""
        if self.fit is None or self.fit.edge != "high":
            return None
        top = 2.0 ** max(self.fit.xs)
        return min((v for v in self.tried if v > top * 1.0001), default=None)

    @property
    def at_stability_edge(self) -> bool:
        """The optimum is the edge of stable training: at the high edge, with a failed value within ``BISECT_TO`` of
        the grid's step above it (in log), so that bisecting further would not move it by what a fit resolves."""
        failed = self.failed_above
        return failed is not None and math.log(failed / 2.0 ** max(self.fit.xs)) <= BISECT_TO * math.log(self.ratio)

    def next_grid(self) -> list[float] | None:
        """Two more grid points past the edge the optimum sits on (the grid's own ratio), or None; where the grid
        already goes past that edge (runs there diverged or collapsed), the geometric midpoint between the edge and
        the nearest of them, until the two are within ``BISECT_TO`` of the grid's step (None then)."""
        if self.fit is None or self.fit.edge is None or self.at_stability_edge:
            return None
        if self.fit.edge == "high":
            top, failed = 2.0 ** max(self.fit.xs), self.failed_above
            if failed is not None:  # the next value up was run and failed to train: halfway (in log) to it
                return [_round((top * failed) ** 0.5)]
            return [_round(top * self.ratio), _round(top * self.ratio**2)]
        low = 2.0 ** min(self.fit.xs)
        return [_round(low / self.ratio**2), _round(low / self.ratio)]


@dataclass(frozen=True)
class TunedComparison:
    """An arm against its reference: ``untuned`` is the arm's fitted loss at the reference's best value minus
    the reference's best loss (what a comparison at one shared learning rate would say); ``tuned`` is the arm's
    best minus the reference's best. CIs are paired seed-bootstrap intervals at the family-corrected level."""

    arm: str
    reference: str
    untuned: float
    tuned: float
    untuned_ci: tuple[float, float] | None
    tuned_ci: tuple[float, float] | None
    level: float
    margin: float

    @property
    def untuned_verdict(self) -> str:
        return interval_verdict(self.untuned_ci, self.margin)

    @property
    def tuned_verdict(self) -> str:
        return interval_verdict(self.tuned_ci, self.margin)

    @property
    def flipped(self) -> bool:
        """The ranking of arm and reference differs between the untuned and the tuned comparison."""
        return (self.untuned > 0) != (self.tuned > 0)


def _round(x: float) -> float:
    return float(f"{x:.3g}")


def tuned_arm(points: Points, grid: Sequence[float], seed: int = 0) -> TunedArm:
    """Fit one arm; every grid value is a column, every seed that has any run a row."""
    seeds = tuple(sorted(set(points.losses) | {s for s, _ in points.diverged}))
    curves = np.array([[points.losses.get(s, {}).get(v, np.nan) for v in grid] for s in seeds], dtype=float)
    xs = np.log2(np.asarray(grid, dtype=float))
    fit = fit_curve(xs, curves) if len(seeds) else None
    ci = bootstrap_optimum(xs, curves, seed=seed) if fit is not None else None
    return TunedArm(points.arm, tuple(grid), seeds, curves, points.diverged, fit, ci)


def compare_tuned(arm: TunedArm, reference: TunedArm, margin: float, family: int, seed: int = 0) -> TunedComparison:
    """The arm against its reference over the seeds both have (the estimates from curves fitted to those seeds
    alone, as their paired intervals are, so that an arm with fewer seeds is never compared with seeds its
    reference alone has), CIs at the Bonferroni level 1 - 0.05/family."""
    if arm.fit is None or reference.fit is None:
        raise ValueError("both arms need a fitted curve")
    shared = [s for s in arm.seeds if s in reference.seeds]
    curves_a = arm.curves[[arm.seeds.index(s) for s in shared]]
    curves_r = reference.curves[[reference.seeds.index(s) for s in shared]]
    level = 1 - ALPHA / max(1, family)
    xs = np.log2(np.asarray(arm.grid, dtype=float))
    cis = bootstrap_tuned_delta(xs, curves_a, curves_r, level=level, seed=seed)
    # the whole arms' fits where the shared seeds alone cannot be fitted (too few points): no interval then
    fit_a = (fit_curve(xs, curves_a) if shared else None) or arm.fit
    fit_r = (fit_curve(xs, curves_r) if shared else None) or reference.fit
    untuned = loss_at(xs, curves_a if shared else arm.curves, fit_a, fit_r.best_x) - fit_r.best_loss
    return TunedComparison(arm.arm, reference.arm, untuned, fit_a.best_loss - fit_r.best_loss,
                           cis["untuned"] if cis else None, cis["tuned"] if cis else None, level, margin)


def plot_lr(arms: Sequence[TunedArm], key: str, path: Path) -> bool:
    """Final loss against the tuned value per arm: each seed's points, the fitted curve, the optimum, and on the top
    edge the runs above the scale (triangles) and the diverged runs (crosses). False when no arm has a fitted
    curve."""
    from matplotlib.figure import Figure

    fitted = [a for a in arms if a.fit is not None]
    if not fitted:
        return False
    fig = Figure(figsize=(8.5, 5), dpi=110, layout="constrained")
    ax = fig.subplots()
    colors = [f"C{i % 10}" for i in range(len(arms))]
    finite = np.concatenate([a.curves[~np.isnan(a.curves)] for a in arms])
    top = float(np.quantile(finite, 0.9)) if finite.size else 1.0
    low = float(finite.min()) if finite.size else 0.0
    ceiling = top + 0.02 * abs(top)
    for color, a in zip(colors, arms):
        for row in a.curves:
            ax.scatter(a.grid, np.where(row > ceiling, np.nan, row), color=color, s=12, alpha=0.6)
            above = row > ceiling  # collapsed runs and the like, off the scale: a triangle on the top edge
            if above.any():
                ax.scatter(np.asarray(a.grid)[above], [ceiling] * int(above.sum()), color=color, marker="^", s=40,
                           clip_on=False, zorder=3)
        if a.fit is not None:
            xs = np.linspace(min(a.fit.xs), max(a.fit.xs), 100)
            ax.plot(2.0**xs, [a.fit.at(x) for x in xs], color=color, label=a.arm)
            ax.scatter([a.best_value], [a.fit.best_loss], color=color, marker="*", s=120, edgecolor="black", zorder=3)
        if a.diverged:
            ax.scatter([v for _, v in a.diverged], [top] * len(a.diverged), color=color, marker="x", s=60,
                       clip_on=False)
    ax.set_xscale("log", base=2)
    grid = sorted({v for a in arms for v in a.grid})
    ax.set_xticks(grid, _tick_labels(grid))
    ax.minorticks_off()
    ax.set_ylim(low - 0.01 * abs(low), ceiling)
    ax.set(xlabel=key, ylabel="final validation loss (whole split)")
    fig.suptitle(f"Final loss vs {key}: seeds (dots), quadratic fit in log {key} (line), its optimum (star)\n"
                 "runs above the scale (triangles) and diverged runs (crosses) on the top edge", fontsize="small")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.savefig(path)
    return True


def _tick_labels(values: Sequence[float], gap: float = 0.12) -> list[str]:
    """A label for each of ``values`` (ascending, on a log axis) unless it would sit within ``gap`` of the axis's
    span of the last one labelled: a grid extended by midpoints has values too close to print side by side."""
    span = math.log(values[-1] / values[0]) if len(values) > 1 else 1.0
    labels, last = [], None
    for v in values:
        shown = last is None or math.log(v / last) >= gap * span
        labels.append(f"{v:g}" if shown else "")
        last = v if shown else last
    return labels


def _v(x: float | None) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{x:.3g}"


def _l(x: float | None) -> str:
    return "—" if x is None else f"{x:.4f}"


def _ci(ci: tuple[float, float] | None, fmt: Any = _l) -> str:
    return "—" if ci is None else f"[{fmt(ci[0])}, {fmt(ci[1])}]"


def _s(x: float) -> str:
    return f"{x:+.4f}"


def section(arms: Sequence[TunedArm], comparisons: Sequence[TunedComparison], key: str, command: str | None,
            margin: float) -> str:
    """The README's Tuning section: per-arm optima, the comparisons at a shared and at each arm's own best
    learning rate, and what the fit did with diverged and missing runs."""
    short = key.split(".")[-1]
    lines = ["## Each arm at its own best " + short, "",
             f"Per arm, the final validation loss against log₂ {short}: a quadratic through the mean over seeds at "
             f"each grid value where every seed has a completed run; grid values where a seed diverged (or has no "
             f"result yet) are left out of the fit and listed, since a divergence marks the curve's edge rather than "
             f"a loss; so are values above the best where training collapsed without a NaN (their mean ending "
             f"worse than at the grid's lowest value, or any one seed worse than every seed there). The quadratic "
             f"goes through the lowest mean and its neighbour on each side (parabolic interpolation: far from its "
             f"optimum the curve is no parabola, gentle below and a cliff above), and its other values are listed "
             f"as left out. "
             f"The optimum is the fitted curve's lowest point within the fitted values' range; it is "
             f"*at the edge* when that is an end of the range, and the grid should then be extended there; "
             f"where the next value up was run and failed to train, halfway (in log) to it, until the two are within "
             f"a quarter of the grid's step: the optimum is then *at the edge of stable training*. "
             f"95% CIs resample seeds (percentile bootstrap, 2,000 resamples): with 3 seeds there are only 10 "
             f"distinct resamples, so read them as the spread between seeds rather than as exact intervals.", ""]
    rows = []
    for a in arms:
        tried = {round(math.log2(v), 9) for v in a.tried}
        excluded = ", ".join(_v(2.0**x) for x in a.fit.excluded if round(x, 9) in tried) if a.fit else ""
        diverged = ", ".join(f"{_v(v)} (seed {s})" for s, v in sorted(a.diverged)) or "—"
        if a.fit is None:
            rows.append([f"`{a.arm}`", "—", "—", "—", "—", "fewer than 3 grid values with every seed", diverged, "—"])
            continue
        if a.at_stability_edge:
            edge = f"**at the edge of stable training**: {short} = {_v(a.failed_above)} failed"
        elif a.fit.edge:
            edge = f"**at the {a.fit.edge} edge**: run {short} = {', '.join(_v(v) for v in a.next_grid())}"
        else:
            edge = "inside the grid"
        x_ci = (2.0 ** a.best_ci[0][0], 2.0 ** a.best_ci[0][1]) if a.best_ci else None
        rows.append([f"`{a.arm}`", _v(a.best_value), _ci(x_ci, _v), _l(a.fit.best_loss),
                     _ci(a.best_ci[1] if a.best_ci else None), edge, diverged, excluded or "—"])
    lines += [_table(["arm", f"best {short}", "95% CI", "loss at best", "95% CI", "optimum", "diverged",
                      f"{short} left out of the fit"], rows), ""]
    if comparisons:
        level = comparisons[0].level
        lines += [f"Each arm against its reference (its parent, else the baseline; then the comparisons the sweep "
                  f"declares), at the reference's best {short} (*untuned*: what one shared "
                  f"{short} would say) and at the arm's own best (*tuned*). Paired over shared seeds; CIs are "
                  f"{100 * level:.2f}% (95% Bonferroni-corrected over the {len(comparisons)} comparisons); the "
                  f"verdict is *better*/*worse* when the interval excludes 0, *equivalent within ±{margin:g}* when "
                  f"it lies inside the margin, otherwise *inconclusive*.", ""]
        crow = []
        for c in comparisons:
            crow.append([f"`{c.arm}`", f"`{c.reference}`", _s(c.untuned), _ci(c.untuned_ci, _s), c.untuned_verdict,
                         _s(c.tuned), _ci(c.tuned_ci, _s), c.tuned_verdict, "**flips**" if c.flipped else "no"])
        lines += [_table(["arm", "reference", f"Δ at reference's best {short}", "CI", "verdict",
                          f"Δ at own best {short}", "CI", "verdict", "ranking flips"], crow), ""]
    extend = [a for a in arms if a.next_grid()]
    if extend and command:
        lines += ["To extend the grid where an optimum sits at an edge, each such arm's new points alone (the sweep's "
                  "other runs stay as they are):", "", "```bash",
                  *(_with_grid(command, key, a.arm, a.next_grid()) for a in extend), "```", ""]
    return "\n".join(lines).rstrip()


def _with_grid(command: str, key: str, arm: str, values: Sequence[float]) -> str:
    """``command`` (the sweep's) launching only ``arm`` at ``values`` of ``key``."""
    words = [w for w in shlex.split(command) if not w.startswith((f"{key}=", "hydra.sweeper.only="))]
    return shell_line([*words, f"hydra.sweeper.only=['{arm}']", f"{key}=" + ",".join(_v(v) for v in values)])


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def summary_sentence(arms: Sequence[TunedArm], comparisons: Sequence[TunedComparison], key: str) -> str:
    """The findings' sentence on tuning: the flips, and the optima at an edge."""
    short = key.split(".")[-1]
    text = []
    flips = [c for c in comparisons if c.flipped]
    if comparisons:
        text.append(f"Tuned ({short} per arm, {len(comparisons)} comparisons): "
                    + "; ".join(f"`{c.arm}` {_s(c.untuned)} at `{c.reference}`'s best {short} "
                                f"({c.untuned_verdict}) → {_s(c.tuned)} at its own ({c.tuned_verdict})"
                                for c in comparisons) + ".")
    if flips:
        text.append("The ranking flips for " + ", ".join(f"`{c.arm}`" for c in flips) + ".")
    edges = [a for a in arms if a.next_grid()]
    if edges:
        text.append("Optima at an edge of the grid (extend it): " + ", ".join(f"`{a.arm}` ({a.fit.edge})"
                                                                             for a in edges) + ".")
    stable = [a for a in arms if a.at_stability_edge]
    if stable:
        text.append("Optima at the edge of stable training (a run failed within a quarter of the grid's step above "
                    "the best; not extended further): " + ", ".join(
                        f"`{a.arm}` (best {_v(a.best_value)}, failed at {_v(a.failed_above)})" for a in stable) + ".")
    return " ".join(text)

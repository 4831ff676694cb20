"""Learning-rate curves: a quadratic in log lr per arm and seed-bootstrap intervals of its optimum and of the
differences between arms at their optima."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from ablate.report.power import ALPHA


@dataclass(frozen=True)
class CurveFit:
    """An arm's final loss against log2 of the tuned value (the learning rate), fitted by a quadratic
    through the mean over seeds at each grid point that no seed diverged at.

    ``best_x``/``best_loss``: where the fitted curve is lowest within the fitted points' range, and its
    value there; ``edge`` when that lies on the range's end (the optimum may be beyond the grid);
    ``excluded``: grid points left out because a seed diverged or lacked a result there."""

    xs: tuple[float, ...]  # log2 of the grid points used
    coef: tuple[float, float, float]  # a x^2 + b x + c
    best_x: float
    best_loss: float
    edge: str | None  # "low", "high" or None
    excluded: tuple[float, ...]

    def at(self, x: float) -> float:
        a, b, c = self.coef
        return a * x * x + b * x + c


def _vertex(coef: np.ndarray, low: float, high: float) -> float:
    """argmin of a·x² + b·x + c over [low, high] (the vertex when it is a minimum inside, else an end)."""
    a, b, c = coef
    if a > 0:
        return float(min(max(-b / (2 * a), low), high))
    return low if a * low * low + b * low <= a * high * high + b * high else high


def collapsed(curves: np.ndarray) -> np.ndarray:
    """Grid points where training collapsed without a NaN: above the lowest mean loss, when that lies inside the
    grid, where the seeds' mean ends worse than the mean at the grid's lowest value, or any one seed ends worse
    than every seed did there (a learning rate too high to learn at all, rather than one on the curve's slope).
    Like a seed's divergence, one seed's collapse marks the curve's edge and keeps the point out of the fit: its
    mean would stand for neither the seeds that trained nor the one that did not (seed_to_gpt2_tuned's post-norm
    arm at 2.83e-3: five seeds at 1.75-1.86 nats and one at 3.35, a mean of 2.05 that pulled a parabola's minimum
    below every run)."""
    missing = np.isnan(curves).any(axis=0)
    means = np.where(missing, np.nan, curves.mean(axis=0))
    finite = np.flatnonzero(~missing)
    if len(finite) == 0 or int(np.nanargmin(means)) == finite[0]:
        return np.zeros(curves.shape[1], dtype=bool)  # best at the lowest value: a rising curve, nothing to jump from
    best = int(np.nanargmin(means))
    first = curves[:, finite[0]]
    return np.array([i > best and (means[i] > first.mean() or bool((curves[:, i] > first.max()).any()))
                     for i in range(curves.shape[1])])


def loss_at(xs: np.ndarray, curves: np.ndarray, fit: CurveFit, x: float) -> float:
    """An arm's loss at ``x``: its fit inside the fitted window, else its mean losses interpolated linearly
    between grid points (where a collapse beyond the window shows)."""
    if min(fit.xs) <= x <= max(fit.xs):
        return fit.at(x)
    every = ~np.isnan(curves).any(axis=0)
    return float(np.interp(x, xs[every], curves[:, every].mean(axis=0)))


def window(xs: np.ndarray, curves: np.ndarray) -> np.ndarray:
    """The grid points a fit uses: the usable point with the lowest mean loss and its usable neighbours on each
    side (three points; the three lowest-x or highest-x when the minimum is at an end). Loss against log lr is
    not a parabola far from the optimum (gentle below it, a cliff above, where training collapses without a
    NaN: seed_to_gpt2_tuned's post-norm arm ends at 3.35 nats at 4e-3 and 8e-3 against 1.78 at 2e-3), so a
    quadratic through every point would be pulled by the far ones; through the three around the minimum it is
    the textbook parabolic interpolation of that minimum."""
    usable = np.flatnonzero(~np.isnan(curves).any(axis=0) & ~collapsed(curves))
    if len(usable) < 3:
        return np.zeros(len(xs), dtype=bool)
    best = int(np.argmin(curves[:, usable].mean(axis=0)))
    start = min(max(best - 1, 0), len(usable) - 3)
    chosen = np.zeros(len(xs), dtype=bool)
    chosen[usable[start:start + 3]] = True
    return chosen


def fit_curve(xs: Sequence[float], curves: np.ndarray) -> CurveFit | None:
    """Fit one arm. ``curves``: (seeds, points) final losses, NaN where a run diverged or is missing.
    ``excluded`` lists the grid points the fit left out (diverged, missing, or away from the minimum)."""
    xs = np.asarray(xs, dtype=float)
    usable = window(xs, curves)
    if usable.sum() < 3:
        return None
    x, y = xs[usable], curves[:, usable].mean(axis=0)
    coef = np.polyfit(x, y, 2)
    best = _vertex(coef, x.min(), x.max())
    tol = 1e-9 * (x.max() - x.min())
    edge = "low" if best <= x.min() + tol else "high" if best >= x.max() - tol else None
    return CurveFit(tuple(x), tuple(float(v) for v in coef), best, float(np.polyval(coef, best)), edge,
                    tuple(xs[~usable]))


def _fits(x: np.ndarray, samples: np.ndarray, low: float, high: float) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised quadratic fits of many resampled mean curves: samples (..., points) -> (best x, best loss)."""
    design = np.stack([x * x, x, np.ones_like(x)], axis=1)  # (points, 3)
    coef = samples @ np.linalg.pinv(design).T  # (..., 3)
    a, b = coef[..., 0], coef[..., 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        vertex = np.where(a > 0, np.clip(-b / (2 * a), low, high), np.nan)
    at = lambda v: (coef[..., 0] * v + coef[..., 1]) * v + coef[..., 2]  # noqa: E731
    ends = np.where(at(low) <= at(high), low, high)
    best = np.where(np.isnan(vertex), ends, vertex)
    return best, at(best)


def bootstrap_optimum(xs: Sequence[float], curves: np.ndarray, level: float = 1 - ALPHA, n_resamples: int = 2000,
                      seed: int = 0) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """Percentile bootstrap CIs over seeds (rows of ``curves`` resampled with replacement) of the fitted
    optimum's x and of the loss there. None with fewer than two seeds or three usable points."""
    xs = np.asarray(xs, dtype=float)
    usable = window(xs, curves)  # chosen on all seeds, then held fixed while seeds are resampled
    if usable.sum() < 3 or len(curves) < 2:
        return None
    x, data = xs[usable], curves[:, usable]

    def statistic(rows: np.ndarray, axis: int = -1) -> np.ndarray:
        best, loss = _fits(x, data[rows.astype(int)].mean(axis=-2), x.min(), x.max())
        return np.stack([best, loss])

    rows = np.arange(len(data))
    result = stats.bootstrap((rows,), lambda r, axis=-1: statistic(r), vectorized=True, n_resamples=n_resamples,
                             confidence_level=level, method="percentile", rng=np.random.default_rng(seed))
    low, high = result.confidence_interval
    return (float(low[0]), float(high[0])), (float(low[1]), float(high[1]))


def bootstrap_tuned_delta(xs: Sequence[float], arm: np.ndarray, reference: np.ndarray, level: float = 1 - ALPHA,
                          n_resamples: int = 2000, seed: int = 0) -> dict[str, tuple[float, float]] | None:
    """Paired bootstrap over shared seeds (rows of ``arm`` and ``reference`` are the same seeds) of
    ``tuned`` (the arm's best loss minus the reference's) and ``untuned`` (the arm's loss at the reference's
    best x minus the reference's best loss: the arm's fit there when it lies inside the arm's fitted window,
    else its mean losses interpolated linearly between grid points, which a collapse beyond the window shows).
    None when either cannot be fitted."""
    xs = np.asarray(xs, dtype=float)
    ok_a, ok_r = window(xs, arm), window(xs, reference)
    every_a = ~np.isnan(arm).any(axis=0)
    if ok_a.sum() < 3 or ok_r.sum() < 3 or len(arm) < 2 or len(arm) != len(reference):
        return None
    xa, xr, xall = xs[ok_a], xs[ok_r], xs[every_a]

    def statistic(rows: np.ndarray, axis: int = -1) -> np.ndarray:
        rows = rows.astype(int)
        a_mean, r_mean = arm[rows][..., ok_a].mean(axis=-2), reference[rows][..., ok_r].mean(axis=-2)
        _, a_best = _fits(xa, a_mean, xa.min(), xa.max())
        r_x, r_best = _fits(xr, r_mean, xr.min(), xr.max())
        design = np.stack([xa * xa, xa, np.ones_like(xa)], axis=1)
        coef = a_mean @ np.linalg.pinv(design).T
        fitted = (coef[..., 0] * r_x + coef[..., 1]) * r_x + coef[..., 2]
        a_all = arm[rows][..., every_a].mean(axis=-2)
        linear = np.array([np.interp(x, xall, m) for x, m in zip(np.ravel(r_x), a_all.reshape(-1, len(xall)))])
        inside = (r_x >= xa.min()) & (r_x <= xa.max())
        a_at_r = np.where(inside, fitted, linear.reshape(np.shape(r_x)))
        return np.stack([a_best - r_best, a_at_r - r_best])

    rows = np.arange(len(arm))
    result = stats.bootstrap((rows,), lambda r, axis=-1: statistic(r), vectorized=True, n_resamples=n_resamples,
                             confidence_level=level, method="percentile", rng=np.random.default_rng(seed))
    low, high = result.confidence_interval
    return {"tuned": (float(low[0]), float(high[0])), "untuned": (float(low[1]), float(high[1]))}


def interval_verdict(ci: tuple[float, float] | None, margin: float) -> str:
    """The four verdicts from a (family-corrected) interval: wholly below 0, above 0, within ±margin, or none."""
    if ci is None:
        return "inconclusive"
    low, high = ci
    if high < 0:
        return "better"
    if low > 0:
        return "worse"
    if -margin < low and high < margin:
        return "equivalent"
    return "inconclusive"

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


def fit_curve(xs: Sequence[float], curves: np.ndarray) -> CurveFit | None:
    """Fit one arm. ``curves``: (seeds, points) final losses, NaN where a run diverged or is missing."""
    xs = np.asarray(xs, dtype=float)
    usable = ~np.isnan(curves).any(axis=0)
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
    usable = ~np.isnan(curves).any(axis=0)
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
    ``tuned`` (the arm's best loss minus the reference's) and ``untuned`` (the arm's fitted loss at the
    reference's best x minus the reference's best loss). None when either cannot be fitted."""
    xs = np.asarray(xs, dtype=float)
    ok_a, ok_r = ~np.isnan(arm).any(axis=0), ~np.isnan(reference).any(axis=0)
    if ok_a.sum() < 3 or ok_r.sum() < 3 or len(arm) < 2 or len(arm) != len(reference):
        return None
    xa, xr = xs[ok_a], xs[ok_r]

    def statistic(rows: np.ndarray, axis: int = -1) -> np.ndarray:
        rows = rows.astype(int)
        a_mean, r_mean = arm[rows][..., ok_a].mean(axis=-2), reference[rows][..., ok_r].mean(axis=-2)
        _, a_best = _fits(xa, a_mean, xa.min(), xa.max())
        r_x, r_best = _fits(xr, r_mean, xr.min(), xr.max())
        design = np.stack([xa * xa, xa, np.ones_like(xa)], axis=1)
        coef = a_mean @ np.linalg.pinv(design).T
        a_at_r = (coef[..., 0] * r_x + coef[..., 1]) * r_x + coef[..., 2]
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

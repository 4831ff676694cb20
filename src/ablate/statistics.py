"""The statistics behind a report's verdicts: paired or Welch comparisons, family-wise correction,
equivalence within a practical margin, power, and learning-rate curves fitted per arm.

Distributions, tests and the bootstrap are scipy's; only what scipy lacks is written here (Holm's
step-down adjustment, the smallest detectable effect, the seeds a comparison needs). ``tests/
test_statistics.py`` checks each claim by simulation: error rates under the null, power at a planted
effect, coverage of the bootstrap intervals, equivalence with enough seeds and not with too few.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy import integrate, optimize, stats

ALPHA = 0.05
POWER = 0.8
MARGIN = 0.01  # nats: the practical margin a sweep gets when it declares none
CORRECTIONS = ("holm", "bh")
VERDICTS = ("better", "worse", "equivalent", "inconclusive")


# -- one comparison -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Comparison:
    """An arm minus its reference on the final validation loss.

    ``test`` is ``paired t`` when the two share at least two seeds (seed s gives every arm the same data
    order and initial draw, so the per-seed differences are the replicates) and ``Welch t`` otherwise.
    ``sd`` is the spread the test uses: of the paired differences, or sqrt(n)·SE for Welch.
    ``p_equiv`` is the two-one-sided-tests p of |Δ| < margin. ``p_adj``/``p_equiv_adj`` are filled in by
    :func:`adjust` over the report's family; the verdict follows from them.
    """

    reference: str
    diff: float
    test: str = "untested"
    n: int = 0  # pairs (paired) or the smaller arm's seeds (Welch)
    ci: tuple[float, float] | None = None
    p: float | None = None
    sd: float | None = None
    df: float | None = None
    se: float | None = None  # standard error of diff
    df_per_seed: float = 1.0  # degrees of freedom one more seed per arm adds (paired 1, Welch about 2)
    margin: float = MARGIN
    p_equiv: float | None = None
    p_adj: float | None = None
    p_equiv_adj: float | None = None
    ci_adj: tuple[float, float] | None = None  # the CI at the Bonferroni level 1 - 0.05/m of the family
    verdict: str = "inconclusive"
    mde: float | None = None  # smallest |Δ| detectable at 80% power with this n and spread
    seeds_needed: int | None = None  # for an inconclusive comparison: seeds per arm that would decide it

    @property
    def tested(self) -> bool:
        return self.p is not None


def compare(
    values: Sequence[float], reference: Sequence[float], name: str, margin: float = MARGIN,
    seeds: Sequence[int | None] | None = None, reference_seeds: Sequence[int | None] | None = None,
) -> Comparison:
    """Compare ``values`` with ``reference``: paired over the seeds they share (when two or more), else Welch."""
    a, b = np.asarray(values, dtype=float), np.asarray(reference, dtype=float)
    if seeds is not None and reference_seeds is not None:
        mine, theirs = dict(zip(seeds, a)), dict(zip(reference_seeds, b))
        shared = [s for s in mine if s is not None and s in theirs]
        if len(shared) >= 2:
            return _paired(np.array([mine[s] - theirs[s] for s in shared]), name, margin)
    return _welch(a, b, name, margin)


def _paired(d: np.ndarray, name: str, margin: float) -> Comparison:
    diff, n = float(np.mean(d)), len(d)
    sd = float(np.std(d, ddof=1))
    if sd == 0:
        return Comparison(name, diff, "paired t", n, margin=margin)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = stats.ttest_1samp(d, 0.0)
        low, high = result.confidence_interval(1 - ALPHA)
        p_lo = stats.ttest_1samp(d, -margin, alternative="greater").pvalue
        p_hi = stats.ttest_1samp(d, margin, alternative="less").pvalue
    return Comparison(name, diff, "paired t", n, (float(low), float(high)), float(result.pvalue), sd, n - 1.0,
                      sd / math.sqrt(n), 1.0, margin, float(max(p_lo, p_hi)))


def _welch(a: np.ndarray, b: np.ndarray, name: str, margin: float) -> Comparison:
    diff = float(np.mean(a) - np.mean(b)) if len(a) and len(b) else float("nan")
    if len(a) < 2 or len(b) < 2 or np.var(a) == np.var(b) == 0:
        return Comparison(name, diff, "Welch t", min(len(a), len(b)), margin=margin)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = stats.ttest_ind(a, b, equal_var=False)
        low, high = result.confidence_interval(1 - ALPHA)
        p_lo = stats.ttest_ind(a + margin, b, equal_var=False, alternative="greater").pvalue
        p_hi = stats.ttest_ind(a - margin, b, equal_var=False, alternative="less").pvalue
    n = min(len(a), len(b))
    se = math.sqrt(np.var(a, ddof=1) / len(a) + np.var(b, ddof=1) / len(b))
    return Comparison(name, diff, "Welch t", n, (float(low), float(high)), float(result.pvalue), se * math.sqrt(n),
                      float(result.df), se, 2.0, margin, float(max(p_lo, p_hi)))


# -- the family ------------------------------------------------------------------------------------
def holm(p: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (step-down; controls the family-wise error rate)."""
    p = np.asarray(p, dtype=float)
    m = len(p)
    order = np.argsort(p)
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adjusted
    return out.tolist()


def adjust_p(p: Sequence[float], method: str = "holm") -> list[float]:
    """Adjusted p-values: ``holm`` (family-wise error) or ``bh`` (Benjamini–Hochberg false discovery rate)."""
    if not len(p):
        return []
    if method == "holm":
        return holm(p)
    if method == "bh":
        return stats.false_discovery_control(np.asarray(p, dtype=float), method="bh").tolist()
    raise ValueError(f"correction {method!r}; choose one of: {', '.join(CORRECTIONS)}")


def adjust(comparisons: Sequence[Comparison], method: str = "holm") -> list[Comparison]:
    """The family's comparisons with adjusted p-values, verdicts, power and seeds needed filled in.

    *better*/*worse*: adjusted p < 0.05; else *equivalent* (within ±margin) when the adjusted TOST p < 0.05;
    else *inconclusive*. Power is judged at the Bonferroni level 0.05/m, which Holm's first step uses and its
    later steps only relax, so the smallest detectable effect it states is, if anything, conservative.
    """
    tested = [c for c in comparisons if c.tested]
    m = max(1, len(tested))
    p_adj = dict(zip(map(id, tested), adjust_p([c.p for c in tested], method)))
    eq_adj = dict(zip(map(id, tested), adjust_p([c.p_equiv for c in tested], method)))
    out = []
    for c in comparisons:
        if not c.tested:
            out.append(c)
            continue
        pa, pe = p_adj[id(c)], eq_adj[id(c)]
        if pa < ALPHA:
            verdict = "worse" if c.diff > 0 else "better"
        else:
            verdict = "equivalent" if pe < ALPHA else "inconclusive"
        mde = _detectable(c.se, c.df, ALPHA / m) if c.se else None
        needed = _seeds_to_decide(c, ALPHA / m) if verdict == "inconclusive" and c.se else None
        half = stats.t.ppf(1 - ALPHA / (2 * m), c.df) * c.se if c.se else None
        ci_adj = (c.diff - half, c.diff + half) if half is not None else None
        out.append(replace(c, p_adj=pa, p_equiv_adj=pe, ci_adj=ci_adj, verdict=verdict, mde=mde, seeds_needed=needed))
    return out


# -- power -----------------------------------------------------------------------------------------
# Each function works from the standard error of Δ and its degrees of freedom; more seeds shrink the SE by
# sqrt(n/k) and add ``df_per_seed`` degrees of freedom per seed.
def _df(n: int, paired: bool) -> float:
    return n - 1.0 if paired else 2.0 * (n - 1)


def _below(x: float, df: float, nc: float) -> float:
    """P(T < x) for a noncentral t, as the upper tail of -T: scipy's nct.cdf returns NaN far in its lower tail."""
    return float(stats.nct.sf(-x, df, -nc))


def _power(effect: float, se: float, df: float, alpha: float) -> float:
    """Probability that a two-sided t-test at ``alpha`` detects a true Δ of ``effect`` (noncentral t)."""
    if df < 1:
        return 0.0
    nc, crit = effect / se, stats.t.ppf(1 - alpha / 2, df)
    return float(stats.nct.sf(crit, df, nc) + _below(-crit, df, nc))


def _detectable(se: float, df: float, alpha: float) -> float | None:
    """The smallest |Δ| a two-sided t-test detects with 80% power; None when even 10,000 SEs are not enough."""
    if df < 1:
        return None
    high = se
    while _power(high, se, df, alpha) < POWER:  # one degree of freedom at a strict alpha needs a large effect
        high *= 2
        if high > 1e4 * se:
            return None
    return float(optimize.brentq(lambda e: _power(e, se, df, alpha) - POWER, 0.0, high))


def _equivalence_power(effect: float, se: float, df: float, margin: float, alpha: float) -> float:
    """Probability that two one-sided tests at ``alpha`` declare |Δ| < margin when the true Δ is ``effect``.

    Exact for the t statistics: given the estimated SE (a scaled chi-square with df degrees of freedom), TOST
    declares equivalence when |Δ̂| < margin − t·SE; Δ̂ is normal around ``effect``. Integrated over the SE."""
    if df < 1:
        return 0.0
    crit = stats.t.ppf(1 - alpha, df)
    q_max = df * (margin / (crit * se)) ** 2  # beyond it the interval margin − t·SE is empty

    def declared(q: float) -> float:
        half = margin - crit * se * math.sqrt(q / df)
        inside = stats.norm.cdf((half - effect) / se) - stats.norm.cdf((-half - effect) / se)
        return max(0.0, inside) * stats.chi2.pdf(q, df)

    return float(min(1.0, integrate.quad(declared, 0.0, q_max, limit=200)[0]))


def power(effect: float, sd: float, n: int, alpha: float = ALPHA, paired: bool = True) -> float:
    """Power of the comparison of n seeds per arm with spread ``sd`` (of the paired differences, or sqrt(n)·SE)."""
    return _power(effect, sd / math.sqrt(n), _df(n, paired), alpha) if n >= 2 else 0.0


def detectable_effect(n: int, sd: float | None, alpha: float = ALPHA, paired: bool = True) -> float | None:
    """The smallest |Δ| detectable with 80% power, given n seeds and the spread ``sd``."""
    return _detectable(sd / math.sqrt(n), _df(n, paired), alpha) if sd and n >= 2 else None


def equivalence_power(effect: float, sd: float, n: int, margin: float, alpha: float = ALPHA,
                      paired: bool = True) -> float:
    """TOST's power with n seeds per arm and spread ``sd`` when the true Δ is ``effect``."""
    return _equivalence_power(effect, sd / math.sqrt(n), _df(n, paired), margin, alpha) if n >= 2 else 0.0


def seeds_to_decide(diff: float, sd: float, margin: float, alpha: float, n: int, paired: bool = True,
                    limit: int = 100) -> int | None:
    """Seeds per arm at which, if the true Δ is the one observed, the comparison is decided with 80% power:
    shown equivalent when |Δ| < margin, shown different otherwise. None beyond ``limit`` seeds."""
    c = Comparison("", diff, "paired t" if paired else "Welch t", n, margin=margin, se=sd / math.sqrt(n),
                   df=_df(n, paired), df_per_seed=1.0 if paired else 2.0)
    return _seeds_to_decide(c, alpha, limit)


def _seeds_to_decide(c: Comparison, alpha: float, limit: int = 100) -> int | None:
    for k in range(max(c.n, 2), limit + 1):
        se, df = c.se * math.sqrt(c.n / k), c.df + (k - c.n) * c.df_per_seed
        p = _equivalence_power(c.diff, se, df, c.margin, alpha) if abs(c.diff) < c.margin else \
            _power(c.diff, se, df, alpha)
        if p >= POWER:
            return k
    return None


# -- learning-rate curves --------------------------------------------------------------------------
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

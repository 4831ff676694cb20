"""Comparisons of an arm with its reference (paired over shared seeds, else Welch), the family's correction
(Holm or Benjamini–Hochberg), equivalence within a margin, and the verdicts."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import stats

from ablate.report.power import ALPHA, _detectable, seeds_needed

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
        needed = seeds_needed(c.diff, c.se, c.df, c.n, c.df_per_seed, c.margin, ALPHA / m) \
            if verdict == "inconclusive" and c.se else None
        half = stats.t.ppf(1 - ALPHA / (2 * m), c.df) * c.se if c.se else None
        ci_adj = (c.diff - half, c.diff + half) if half is not None else None
        out.append(replace(c, p_adj=pa, p_equiv_adj=pe, ci_adj=ci_adj, verdict=verdict, mde=mde, seeds_needed=needed))
    return out

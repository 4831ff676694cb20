"""Power: the smallest effect a comparison can detect, the probability that TOST declares equivalence, and the
seeds that would decide a comparison. Each works from the SE of Δ and its degrees of freedom."""

from __future__ import annotations

import math

from scipy import integrate, optimize, stats

ALPHA = 0.05
POWER = 0.8


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
    return seeds_needed(diff, sd / math.sqrt(n), _df(n, paired), n, 1.0 if paired else 2.0, margin, alpha, limit)


def seeds_needed(diff: float, se: float, df: float, n: int, df_per_seed: float, margin: float, alpha: float,
                 limit: int = 100) -> int | None:
    """:func:`seeds_to_decide` from a comparison's SE and degrees of freedom at its n seeds."""
    for k in range(max(n, 2), limit + 1):
        se_k, df_k = se * math.sqrt(n / k), df + (k - n) * df_per_seed
        p = _equivalence_power(diff, se_k, df_k, margin, alpha) if abs(diff) < margin else \
            _power(diff, se_k, df_k, alpha)
        if p >= POWER:
            return k
    return None

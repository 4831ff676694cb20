"""The report's statistics, checked by simulation against known answers (no training; seconds)."""

import math

import numpy as np
import pytest
from scipy import stats

from ablate.report.compare import adjust, adjust_p, compare, holm
from ablate.report.curves import bootstrap_optimum, collapsed, fit_curve
from ablate.report.factorial import two_level_effects
from ablate.report.power import ALPHA, detectable_effect, equivalence_power, power, seeds_to_decide
from ablate.report.tuning import Points, section, summary_sentence, tuned_arm

SEED = 1
RNG = np.random.default_rng(SEED)


@pytest.fixture(autouse=True)
def fresh_rng():
    """Every test draws from the same fresh generator, whichever tests ran before it in its process: with one
    generator shared by the module, `pytest -k` or xdist's distribution of tests over workers changed what a test
    drew, and a single-draw example (a null effect not called significant) holds for most draws, not all. The
    repeated-study tests check the rates themselves."""
    global RNG
    RNG = np.random.default_rng(SEED)


def test_holm_matches_its_definition_on_a_small_family():
    # sorted p: 0.01, 0.02, 0.03, 0.2 -> 4*0.01, 3*0.02, 2*0.03, 1*0.2, made monotone
    assert holm([0.03, 0.01, 0.2, 0.02]) == pytest.approx([0.06, 0.04, 0.2, 0.06])
    assert adjust_p([0.01, 0.04, 0.03], "bh") == pytest.approx([0.03, 0.04, 0.04])


def test_paired_comparison_is_scipys_paired_t_and_welch_is_used_without_shared_seeds():
    a, b = RNG.normal(size=5), RNG.normal(size=5)
    paired = compare(a, b, "ref", seeds=[1, 2, 3, 4, 5], reference_seeds=[1, 2, 3, 4, 5])
    assert paired.test == "paired t" and paired.p == pytest.approx(stats.ttest_rel(a, b).pvalue)
    welch = compare(a, b, "ref", seeds=[1, 2, 3, 4, 5], reference_seeds=[6, 7, 8, 9, 10])
    assert welch.test == "Welch t" and welch.p == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)


def _null_pvalues(studies: int, m: int, n: int) -> np.ndarray:
    """p-values of m paired comparisons per study, no true effect, n seeds each."""
    d = RNG.normal(size=(studies, m, n))
    return stats.ttest_1samp(d, 0.0, axis=-1).pvalue


def test_holm_keeps_the_family_wise_error_of_13_null_comparisons_at_5_percent():
    studies, m = 4000, 13
    p = _null_pvalues(studies, m, n=3)
    # the vectorised p-values are compare()'s
    d = RNG.normal(size=3)
    assert compare(d, np.zeros(3), "r", seeds=[1, 2, 3], reference_seeds=[1, 2, 3]).p == pytest.approx(
        stats.ttest_1samp(d, 0.0).pvalue)
    raw_fwer = np.mean((p < ALPHA).any(axis=1))
    holm_fwer = np.mean([(np.array(holm(row)) < ALPHA).any() for row in p])
    mc = 3 * np.sqrt(0.05 * 0.95 / studies)  # three Monte-Carlo standard errors
    assert raw_fwer == pytest.approx(1 - 0.95**13, abs=3 * np.sqrt(0.49 * 0.51 / studies))  # about 49%
    assert holm_fwer <= ALPHA + mc


@pytest.mark.parametrize("n", [3, 5])
def test_a_planted_2_sigma_effect_is_detected_at_the_claimed_power(n):
    studies, sigma = 4000, 0.01
    d = RNG.normal(2 * sigma, sigma, size=(studies, n))
    detected = np.mean(stats.ttest_1samp(d, 0.0, axis=-1).pvalue < ALPHA)
    assert detected == pytest.approx(power(2 * sigma, sigma, n), abs=0.05)
    mde = detectable_effect(n, sigma)
    d = RNG.normal(mde, sigma, size=(studies, n))
    assert np.mean(stats.ttest_1samp(d, 0.0, axis=-1).pvalue < ALPHA) == pytest.approx(0.8, abs=0.05)


def test_equivalence_is_declared_for_a_planted_zero_with_enough_seeds_and_refused_with_too_few():
    sigma, margin = 0.006, 0.01

    def declared(n: int, studies: int = 1000) -> float:
        d = RNG.normal(0.0, sigma, size=(studies, n))
        return np.mean([compare(row, np.zeros(n), "r", margin, list(range(n)), list(range(n))).p_equiv < ALPHA
                        for row in d])

    many, few = declared(10), declared(2)
    assert many >= 0.95 and many == pytest.approx(equivalence_power(0, sigma, 10, margin), abs=0.05)
    assert few <= 0.25 and few == pytest.approx(equivalence_power(0, sigma, 2, margin), abs=0.05)
    n = seeds_to_decide(0.0, sigma, margin, ALPHA, 2)
    assert n is not None and equivalence_power(0, sigma, n, margin) >= 0.8 > equivalence_power(0, sigma, n - 1, margin)


def test_verdicts_follow_the_corrected_tests():
    n, seeds = 6, list(range(6))
    worse = compare(np.full(n, 0.05) + RNG.normal(0, 0.002, n), np.zeros(n), "r", 0.01, seeds, seeds)
    same = compare(RNG.normal(0, 0.001, n), np.zeros(n), "r", 0.01, seeds, seeds)
    noisy = compare(RNG.normal(0, 0.05, n), np.zeros(n), "r", 0.01, seeds, seeds)
    verdicts = [c.verdict for c in adjust([worse, same, noisy])]
    assert verdicts == ["worse", "equivalent", "inconclusive"]
    assert adjust([noisy])[0].seeds_needed is None or adjust([noisy])[0].seeds_needed > n


def test_the_bootstrap_ci_of_a_planted_learning_rate_optimum_covers_it_at_its_nominal_rate():
    xs = np.log2([2.5e-4, 5e-4, 1e-3, 2e-3, 4e-3, 8e-3])
    true_x, seeds, studies = np.log2(1.5e-3), 20, 400
    covered = 0
    for _ in range(studies):
        seed_offset = RNG.normal(0, 0.01, size=(seeds, 1))  # a seed shifts its whole curve
        curves = 1.9 + 0.02 * (xs - true_x) ** 2 + seed_offset + RNG.normal(0, 0.01, size=(seeds, len(xs)))
        (low, high), _ = bootstrap_optimum(xs, curves, n_resamples=500, seed=int(RNG.integers(1 << 30)))
        covered += low <= true_x <= high
    assert covered / studies == pytest.approx(0.95, abs=0.05)


def test_a_curve_fit_finds_the_vertex_flags_an_edge_and_leaves_out_diverged_points():
    xs = np.log2([5e-4, 1e-3, 2e-3, 4e-3, 8e-3])
    curve = 1.9 + 0.05 * (xs - np.log2(2e-3)) ** 2
    fit = fit_curve(xs, np.stack([curve, curve + 0.01]))
    assert fit.best_x == pytest.approx(np.log2(2e-3)) and fit.edge is None
    falling = fit_curve(xs, np.stack([2.0 - 0.01 * xs, 2.01 - 0.01 * xs]))
    assert falling.edge == "high" and falling.best_x == pytest.approx(xs[-1])
    diverged = np.stack([curve, curve])
    diverged[1, 1] = np.nan  # a divergence next to the minimum: the window moves past it
    fit = fit_curve(xs, diverged)
    assert xs[1] in fit.excluded and xs[1] not in fit.xs and len(fit.xs) == 3
    # the fit goes through the minimum and its neighbours: far points (a different shape) do not pull it
    far = curve.copy()
    far[0] += 0.5
    assert fit_curve(xs, np.stack([far, far + 0.01])).best_x == pytest.approx(np.log2(2e-3))


def test_a_collapse_without_nan_marks_the_curves_edge_and_stays_out_of_the_fit():
    """seed_to_gpt2_tuned's post-norm arm: 2.09, 1.91, 1.78 nats at 5e-4..2e-3, then 3.35 at 4e-3 and 8e-3 (training
    collapsed without a NaN). A parabola through 1e-3..4e-3 would put a minimum of ~1.63 near 1.5e-3, lower than
    any run reached; the collapsed values are the edge instead."""
    xs = np.log2([5e-4, 1e-3, 2e-3, 4e-3, 8e-3])
    post = np.array([[2.0945, 1.9166, 1.7818, 3.3487, 3.3485], [2.0821, 1.9068, 1.7756, 3.3474, 3.3473]])
    assert list(collapsed(post)) == [False, False, False, True, True]
    fit = fit_curve(xs, post)
    assert fit.edge == "high" and fit.best_x == pytest.approx(xs[2]) and set(fit.excluded) == {xs[3], xs[4]}
    assert fit.best_loss == pytest.approx(post[:, 2].mean())
    assert not collapsed(np.stack([post[0, :3], post[1, :3]])).any()  # a rising slope below the first value is not


# seed_to_gpt2_tuned's post-norm arm, six seeds (rows) at 5e-4, 1e-3, 2e-3, 2.83e-3, 4e-3 and 8e-3
POST_GRID = [5e-4, 1e-3, 2e-3, 2.83e-3, 4e-3, 8e-3]
POST = np.array([[2.0945, 1.9166, 1.7818, 1.7522, 3.3487, 3.3485], [2.0821, 1.9068, 1.7756, 1.7626, 3.3474, 3.3473],
                 [2.0986, 1.9156, 1.7747, 1.8572, 3.3473, 3.3472], [2.1066, 1.9177, 1.7858, 1.7615, 3.3474, 3.3475],
                 [2.1109, 1.9292, 1.8182, 1.7927, 3.3476, 3.3476], [2.0867, 1.9466, 1.7884, 3.3483, 3.3484, 3.3487]])


def test_one_seeds_collapse_marks_the_edge_as_a_divergence_would():
    """seed_to_gpt2_tuned's post-norm arm, six seeds: at 2.83e-3 five train (1.75-1.86) and seed 6 collapses
    (3.35). Their mean (2.05) is no collapse by the means, and a parabola through 1e-3, 2e-3 and it would put a
    minimum of ~1.74 near 1.6e-3, below every mean; one seed's collapse is the edge, as a divergence is."""
    xs = np.log2(POST_GRID)
    post = POST
    assert post[:, 3].mean() < post[:, 0].mean()  # by the means 2.83e-3 would be on the slope
    assert list(collapsed(post)) == [False, False, False, True, True, True]
    fit = fit_curve(xs, post)
    assert fit.edge == "high" and fit.best_x == pytest.approx(xs[2]) and set(fit.excluded) == set(xs[3:])
    assert fit.best_loss == pytest.approx(post[:, 2].mean())  # no lower than any mean it was fitted to
    # without seed 6 the five seeds train at 2.83e-3, and it is the best point, inside the fit
    five = fit_curve(xs, post[:5])
    assert not collapsed(post[:5])[3] and xs[3] in five.xs and five.edge is None
    # a seed that ends worse than the others but learned (1.86, against 2.08-2.10 at 5e-4) is no collapse
    assert not collapsed(post[:3])[3]
    # nor is a point on a slope where one seed ends a little worse than another seed's lowest-value loss
    flat = np.array([[1.72, 1.69, 1.71], [1.70, 1.69, 1.70]])
    assert flat[0, 2] > flat[1, 0] and not collapsed(flat).any()
    assert collapsed(np.array([[1.72, 1.69, 1.73], [1.70, 1.69, 1.70]]))[2]  # worse than every seed at the lowest


def test_the_report_bisects_toward_a_failed_rate_until_a_quarter_of_the_grids_step():
    """Past post-norm's high edge the report asks for the rate halfway (in log) to where a seed collapsed, as the
    study ran them (2.38e-3, then 2.18e-3), and then for nothing: the optimum is the edge of stable training."""
    post, grid = POST, POST_GRID
    arm = tuned_arm(Points("post", {seed: dict(zip(grid, row)) for seed, row in enumerate(post, 1)}), grid)
    assert arm.fit.edge == "high" and arm.next_grid() == [0.00238]  # sqrt(2e-3 * 2.83e-3), not the 2x grid's 2.83e-3
    assert arm.failed_above == 2.83e-3 and not arm.at_stability_edge
    # run there, seed 6 collapses again (the five others train): halfway again, to 2.18e-3 (2.38e-3 is 1.19x 2e-3,
    # just over a quarter of the grid's factor 2, 1.1892x)
    grid = [5e-4, 1e-3, 2e-3, 2.38e-3, 2.83e-3, 4e-3, 8e-3]
    at_238 = [1.7644, 1.7582, 1.7700, 1.7682, 1.7746, 3.3479]
    runs = np.insert(post, 3, at_238, axis=1)
    arm = tuned_arm(Points("post", {seed: dict(zip(grid, row)) for seed, row in enumerate(runs, 1)}), grid)
    assert arm.failed_above == 2.38e-3 and arm.next_grid() == [0.00218]
    # at 2.18e-3 all six train and it is the best value; the failed 2.38e-3 is within a quarter grid step above it:
    # the optimum is the edge of stable training, and the report asks for nothing more
    grid = [5e-4, 1e-3, 2e-3, 2.18e-3, 2.38e-3, 2.83e-3, 4e-3, 8e-3]
    runs = np.insert(runs, 3, [1.7642, 1.7706, 1.7607, 1.7675, 1.7810, 1.7901], axis=1)
    arm = tuned_arm(Points("post", {seed: dict(zip(grid, row)) for seed, row in enumerate(runs, 1)}), grid)
    assert arm.fit.edge == "high" and arm.best_value == pytest.approx(2.18e-3)
    assert arm.failed_above == 2.38e-3 and arm.at_stability_edge and arm.next_grid() is None
    table = section([arm], [], "optim.lr", "ablate-train -m sweeps=s", margin=0.01)
    assert "| **at the edge of stable training**: lr = 0.00238 failed |" in table and "To extend the grid" not in table
    assert summary_sentence([arm], [], "optim.lr") == (
        "Optima at the edge of stable training (a run failed within a quarter of the grid's step above the best; not "
        "extended further): `post` (best 0.00218, failed at 0.00238).")


def half_fraction(axes: list[str]) -> list[dict[str, str]]:
    """The 2^(k-1) resolution-V half fraction I = ABCDE (k = 5): every combination with an even number of 'b'."""
    import itertools

    return [dict(zip(axes, combo)) for combo in itertools.product("ab", repeat=len(axes)) if combo.count("b") % 2 == 0]


def test_a_half_fraction_recovers_planted_main_effects_and_interactions_with_honest_intervals():
    axes = ["A", "B", "C", "D", "E"]
    cells = half_fraction(axes)
    assert len(cells) == 16
    low = {a: "a" for a in axes}
    truth = {"A": 0.10, "B × C": 0.04}  # everything else 0

    def simulate():
        levels, y, blocks = [], [], []
        for seed in (1, 2, 3):
            offset = RNG.normal(0, 0.02)
            for lv in cells:
                x = {a: 1.0 if lv[a] == "b" else -1.0 for a in axes}
                value = 2.0 + offset + truth["A"] / 2 * x["A"] + truth["B × C"] / 2 * x["B"] * x["C"]
                levels.append(lv), y.append(value + RNG.normal(0, 0.01)), blocks.append(seed)
        return two_level_effects(levels, y, blocks, low, margin=0.02)

    effects = {e.reference: e for e in simulate()}
    assert len(effects) == 15 and effects["A"].test == "OLS t" and effects["A"].df == 48 - 3 - 15
    assert effects["A"].diff == pytest.approx(0.10, abs=0.01) and effects["B × C"].diff == pytest.approx(0.04, abs=0.01)
    verdicts = {e.reference: e.verdict for e in adjust(list(effects.values()))}
    assert verdicts["A"] == "worse" and verdicts["B × C"] == "worse"
    assert sum(v in ("better", "worse") for v in verdicts.values()) == 2  # the 13 null effects: none "significant"
    covered, null_rejections, studies = 0, 0, 300
    for _ in range(studies):
        est = simulate()
        covered += sum(e.ci[0] <= truth.get(e.reference, 0.0) <= e.ci[1] for e in est)
        null_p = [e.p for e in est if e.reference not in truth]
        null_rejections += any(p < ALPHA for p in holm(null_p))
    assert covered / (15 * studies) == pytest.approx(0.95, abs=0.02)
    assert null_rejections / studies <= ALPHA + 3 * np.sqrt(0.05 * 0.95 / studies)


def test_an_aliased_design_is_not_estimated():
    axes = ["A", "B", "C"]
    cells = half_fraction(axes)  # 2^(3-1): main effects aliased with two-way interactions
    assert two_level_effects(cells * 3, [1.0] * 12, [1] * 4 + [2] * 4 + [3] * 4, {a: "a" for a in axes}) is None


def test_a_tuned_comparison_estimates_over_the_seeds_both_arms_have_as_its_interval_does():
    """The reference has a third seed, 0.1 worse everywhere, that the arm lacks: the estimates and their paired
    intervals both come from seeds 1 and 2 (over all of each arm's seeds the estimate fell outside its interval)."""
    from ablate.report.tuning import Points, compare_tuned, tuned_arm

    grid = [1e-3, 2e-3, 4e-3, 8e-3, 1.6e-2]

    def loss(best_lr: float, floor: float, seed: int, lr: float) -> float:
        return floor + 0.05 * (math.log2(lr / best_lr)) ** 2 + 0.002 * seed * math.sin(5 * lr * seed)

    ref = tuned_arm(Points("A", {s: {lr: loss(4e-3, 1.9 + 0.1 * (s == 3), s, lr) for lr in grid} for s in (1, 2, 3)}),
                    grid)
    arm = tuned_arm(Points("B", {s: {lr: loss(3e-3, 1.88, s, lr) for lr in grid} for s in (1, 2)}), grid)
    c = compare_tuned(arm, ref, margin=0.01, family=1)
    xs = np.log2(grid)
    shared_ref = fit_curve(xs, ref.curves[:2])
    assert c.tuned == pytest.approx(fit_curve(xs, arm.curves).best_loss - shared_ref.best_loss)
    assert c.tuned_ci[0] <= c.tuned <= c.tuned_ci[1] and c.untuned_ci[0] <= c.untuned <= c.untuned_ci[1]
    assert c.tuned == pytest.approx(-0.02, abs=0.01)  # not -0.053, which the reference's third seed would make it

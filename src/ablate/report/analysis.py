"""The report's numbers, computed once from a sweep: the arms, the missing runs, the design and its effects, and
the tuned analysis."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ablate.contract import find_arm
from ablate.report.arms import (
    ArmStats,
    Missing,
    arm_stats,
    base_arms,
    latest_runs,
    margin,
    missing_runs,
    reference_arm,
    resolve_baseline,
)
from ablate.report.compare import Comparison
from ablate.report.factorial import Design, design_effects, factorial_design
from ablate.report.records import RunData, Sweep
from ablate.report.tuning import Points, TunedArm, TunedComparison, compare_tuned, tuned_arm


@dataclass
class Report:
    """Everything the README says, computed once from a :class:`Sweep`."""

    sweep: Sweep
    baseline: str | None
    arms: list[ArmStats]
    missing: list[Missing]
    design: Design | None
    declared: list[ArmStats] = field(default_factory=list)  # the sweep's declared comparisons (sweep.compare)
    tuned_arms: list[TunedArm] = field(default_factory=list)
    tuned: list[TunedComparison] = field(default_factory=list)
    effects: list[Comparison] = field(default_factory=list)  # a two-level design's effects
    low: dict[str, str] = field(default_factory=dict)  # each axis's reference level (the baseline's)

    @classmethod
    def build(cls, sweep: Sweep) -> Report:
        baseline = resolve_baseline(sweep.baseline, base_arms(sweep))
        runs = latest_runs(sweep.runs)
        design = None if sweep.tune else factorial_design(runs)  # a tuned key is not a factorial axis
        arms, declared = arm_stats(sweep, baseline)
        report = cls(sweep, baseline, arms, missing_runs(sweep), design, declared)
        report.effects, report.low = design_effects(design, baseline, margin(sweep), sweep.correction)
        if len(sweep.tune) == 1:
            report.tuned_arms, report.tuned = tuning(sweep, runs)
        return report


def tuning(sweep: Sweep, runs: Sequence[RunData]) -> tuple[list[TunedArm], list[TunedComparison]]:
    """Each arm's curve over the tuned grid, and each arm against its reference at both optima, then each
    comparison the sweep declared (``sweep.compare``)."""
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
    references = {a.arm: reference_arm(a.arm, names, baseline, sweep.arms) for a in arms}
    pairs = [(a, by_name[references[a.arm]]) for a in arms if a.arm != baseline and references[a.arm] in by_name]
    declared = [(find_arm(a, names), find_arm(ref, names)) for a, ref in sweep.compare.items()]
    pairs += [(by_name[a], by_name[ref]) for a, ref in declared if a in by_name and ref in by_name]
    pairs = [(a, ref) for a, ref in pairs if a.fit is not None and ref.fit is not None]
    return arms, [compare_tuned(a, ref, margin(sweep), len(pairs)) for a, ref in pairs]

"""Numbers into words: the arms table, verdicts, and the findings paragraphs (the same numbers give the same text)."""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Sequence
from typing import Any

from ablate.report.analysis import Report
from ablate.report.arms import ArmStats, Spread, change_of, margin, reference_of
from ablate.report.compare import Comparison
from ablate.report.factorial import main_effects
from ablate.report.power import ALPHA
from ablate.report.records import Sweep
from ablate.report.shell import shell_line
from ablate.report.tuning import summary_sentence


def _loss(x: float | None) -> str:
    return "—" if x is None else f"{x:.4f}"


def _signed(x: float) -> str:
    return f"{x:+.4f}"


def _p(p: float | None) -> str:
    return "—" if p is None else (f"{p:.4f}" if p >= 1e-4 else f"{p:.1e}")


def _ci(ci: tuple[float, float] | None, fmt: Any = _loss) -> str:
    return "—" if ci is None else f"[{fmt(ci[0])}, {fmt(ci[1])}]"


def _mean_std(s: Spread) -> str:
    return _loss(s.mean) if s.std is None else f"{_loss(s.mean)} ± {_loss(s.std)}"


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def arms_table(arms: Sequence[ArmStats]) -> str:
    """The arms table in Markdown, losses to 4 decimals."""
    header = ["arm", "seeds done/planned", "diverged", "failed", "final val loss (mean ± std)", "95% CI",
              "best val loss (mean ± std)", "reference", "Δ final", "95% CI of Δ", "test", "p", "p adj.",
              "verdict", "detectable Δ (80% power)", "parameters", "tokens/s"]
    rows = []
    for a in arms:
        d = a.delta
        rows.append([
            f"`{a.arm}`", f"{a.done}/{a.planned}", a.diverged, a.failed, _mean_std(a.final), _ci(a.final.ci),
            _mean_std(a.best), f"`{d.reference}`" if d else "—", _signed(d.diff) if d else "—",
            _ci(d.ci, _signed) if d else "—", d.test if d else "—", _p(d.p) if d else "—",
            _p(d.p_adj) if d else "—", _verdict(d) if d else "—", f"±{_loss(d.mde)}" if d and d.mde else "—",
            "–".join(f"{n:,}" for n in a.n_params) or "—",
            "—" if a.tokens_per_sec is None else f"{a.tokens_per_sec:,.0f}",
        ])
    return _table(header, rows)


def _verdict(d: Comparison) -> str:
    """The verdict in the words the findings use: better, worse, equivalent within ±margin, inconclusive."""
    if not d.tested:
        return "untested"
    return f"equivalent within ±{d.margin:g}" if d.verdict == "equivalent" else d.verdict


def _listed(arms: Sequence[ArmStats], baseline: str | None, limit: int = 8) -> str:
    """The comparisons of the first ``limit`` arms (largest Δ first); the rest are counted, not listed."""
    text = "; ".join(_comparison(a, baseline) for a in arms[:limit])
    return text + (f"; and {len(arms) - limit} more (see the table)" if len(arms) > limit else "")


def _comparison(a: ArmStats, baseline: str | None) -> str:
    d = a.delta
    versus = "" if d.reference == baseline else f" vs `{d.reference}`"
    return f"`{a.arm}`{versus} by {_signed(d.diff)} (95% CI {_ci(d.ci, _signed)}, adjusted p = {_p(d.p_adj)})"


def swaps(sweep: Sweep, arms: Sequence[ArmStats]) -> dict[str, tuple[ArmStats, ArmStats]]:
    """Settings changed in both directions between two arms, keyed by setting: P with Q's value and Q with P's,
    each compared with its own parent (as ``seed_to_gpt2`` is built)."""
    by_key: dict[str, list[ArmStats]] = {}
    for a in arms:
        change = change_of(sweep, a.arm)
        if a.delta is None or change is None or not a.delta.tested:
            continue
        if a.delta.reference == change.parent_row:
            by_key.setdefault(change.key, []).append(a)
    return {k: (v[0], v[1]) for k, v in by_key.items() if len(v) == 2 and v[0].delta.reference != v[1].delta.reference}


def _change(sweep: Sweep, a: ArmStats) -> str:
    change = change_of(sweep, a.arm)
    return (f"in `{change.parent}`, `{change.text}` changes the loss by {_signed(a.delta.diff)} "
            f"({_verdict(a.delta)}, adjusted p = {_p(a.delta.p_adj)})")


def plain_words(report: Report) -> str:
    """One line per setting changed in both directions: does it matter, which value wins, by how much."""
    lines = []
    sweep = report.sweep
    pairs = sorted(swaps(sweep, report.arms).items(), key=lambda kv: -max(abs(a.delta.diff) for a in kv[1]))
    for key, (a, b) in pairs:
        sig_a, sig_b = a.delta.verdict in ("better", "worse"), b.delta.verdict in ("better", "worse")
        if sig_a and sig_b and (a.delta.diff > 0) != (b.delta.diff > 0):
            worse = a if a.delta.diff > 0 else b  # the arm that took on the worse value
            value = change_of(sweep, worse.arm).value
            lines.append(f"- **`{key}` matters**: `{value}` is worse whichever model it goes into: "
                         f"{_change(sweep, a)}; {_change(sweep, b)}.")
        elif sig_a and sig_b:
            lines.append(f"- **`{key}` matters, but which value is better depends on the rest of the model**: "
                         f"{_change(sweep, a)}; {_change(sweep, b)}.")
        elif sig_a or sig_b:
            hit, other = (a, b) if sig_a else (b, a)
            lines.append(f"- **`{key}` matters in one direction only**: {_change(sweep, hit)}; "
                         f"but {_change(sweep, other)}.")
        elif a.delta.verdict == b.delta.verdict == "equivalent":
            lines.append(f"- **`{key}` makes no difference beyond the margin**, either way: {_change(sweep, a)}; "
                         f"{_change(sweep, b)}.")
        else:
            lines.append(f"- **`{key}` is not decided**: neither direction is shown different, nor both equivalent: "
                         f"{_change(sweep, a)}; {_change(sweep, b)}.")
    if not lines:
        return ""
    by_name = {a.arm: a for a in report.arms}
    heads = [
        f"`{a.arm}` ends at {_loss(a.final.mean)} and `{a.delta.reference}` at "
        f"{_loss(by_name[a.delta.reference].final.mean)}: {_signed(a.delta.diff)} (95% CI {_ci(a.delta.ci, _signed)}, "
        f"{_verdict(a.delta)}, adjusted p = {_p(a.delta.p_adj)}, {a.final.n} seeds each)."
        for a in report.arms if change_of(sweep, a.arm) is None and a.delta is not None and a.delta.tested
    ]
    return " ".join([*heads, "Setting by setting, each changed in both directions (final validation loss over the "
                     f"whole split, lower is better; {rule(report)}):"]) + "\n\n" + "\n".join(lines)


def rule(report: Report) -> str:
    """How the verdicts were reached, in one clause."""
    method = {"holm": "Holm–Bonferroni", "bh": "Benjamini–Hochberg"}[report.sweep.correction]
    family = [a for a in report.arms + report.declared if a.delta is not None and a.delta.tested]
    tests = sorted({a.delta.test for a in family})
    return (f"{' or '.join(tests) or 'paired or Welch t'}-tests on the final validation loss over seeds, "
            f"{method}-adjusted over the {len(family)} comparisons; "
            f"*better*/*worse*: adjusted p < {ALPHA}; *equivalent within ±{margin(report.sweep):g}*: both one-sided "
            f"tests against the margin adjusted p < {ALPHA}; otherwise *inconclusive*")


def findings(report: Report) -> str:
    """The Findings paragraph, in words, from the numbers alone (so regenerating it gives the same text)."""
    arms, missing = report.arms, report.missing
    planned = sum(a.planned for a in arms)
    text = [
        f"{sum(a.done for a in arms)} of {planned} planned runs finished; {sum(a.diverged for a in arms)} diverged "
        f"and {sum(a.failed for a in arms)} failed."
    ]
    if missing:
        text.append(f"**Partial sweep:** {len(missing)} runs have no result (listed under Missing runs).")
    tested = sorted((a for a in arms + report.declared if a.delta and a.delta.tested), key=lambda a: -abs(a.delta.diff))
    groups = {v: [a for a in tested if a.delta.verdict == v] for v in ("worse", "better", "equivalent", "inconclusive")}
    names = [a.arm for a in arms]
    refs = {a.arm: reference_of(report.sweep, a.arm, names, report.baseline) for a in arms}
    untested = [a for a in arms if a.final.n and refs[a.arm] in names and (a.delta is None or not a.delta.tested)]
    alone = [a.arm for a in arms if refs[a.arm] is not None and refs[a.arm] not in names]
    text.append(f"Verdicts ({rule(report)}; the reference is the baseline `{report.baseline}` unless named):")
    words = {"worse": "**Worse**", "better": "**Better**",
             "equivalent": f"**Equivalent within ±{margin(report.sweep):g}**", "inconclusive": "**Inconclusive**"}
    for verdict, group in groups.items():
        if group:
            text.append(f"{words[verdict]}: {_listed(group, report.baseline)}.")
    if not tested:
        text.append("none tested.")
    if groups["inconclusive"]:
        text.append(power_sentence(report, groups["inconclusive"]))
    if untested:
        names = ", ".join(f"`{a.arm}` ({a.final.n} completed" + f", {a.diverged} diverged" * bool(a.diverged) + ")"
                          for a in untested)
        text.append(f"Not tested (fewer than two completed seeds on a side, or no variance): {names}.")
    if alone:
        text.append("No reference at the grid value (run for the arm alone, as an extension of its grid): "
                    + ", ".join(f"`{a}`" for a in alone) + ".")
    if report.tuned_arms:
        text.append(summary_sentence(report.tuned_arms, report.tuned, next(iter(report.sweep.tune))))
    if report.effects:
        decided = [e for e in report.effects if e.verdict != "inconclusive"]
        listed = "; ".join(f"`{e.reference}` {_signed(e.diff)} ({_verdict(e)})" for e in decided) or "none decided"
        text.append(f"Factorial effects ({len(report.effects)}, one family; see Factorial effects): {listed}; "
                    f"{len(report.effects) - len(decided)} inconclusive.")
    elif report.design is not None and report.design.complete:
        ranges = {axis: max(e.values()) - min(e.values()) for axis, e in main_effects(report.design).items()}
        axis = max(ranges, key=ranges.get)
        text.append(f"Of the factorial axes, `{axis}` has the largest main effect (range {_loss(ranges[axis])}).")
    return " ".join(text)


def power_sentence(report: Report, inconclusive: Sequence[ArmStats]) -> str:
    """What the inconclusive comparisons could have seen, and the seeds (and command) that would decide them."""
    mdes = [a.delta.mde for a in inconclusive if a.delta.mde]
    needed = [a.delta.seeds_needed for a in inconclusive]
    text = (f"With these seeds the inconclusive comparisons could detect, at 80% power, effects of "
            f"±{_loss(min(mdes))} to ±{_loss(max(mdes))} nats" if mdes else "")
    decidable = [n for n in needed if n is not None]
    if decidable:
        seeds = sorted({r.seed for r in report.sweep.runs if isinstance(r.seed, int)})
        target = max(decidable)
        command = more_seeds_command(report.sweep, seeds, target)
        text += (f"; if the true differences are the observed ones, {min(decidable)} to {target} seeds per arm "
                 f"would decide {len(decidable)} of the {len(inconclusive)} (see the table)")
        if command:
            text += f", and this adds the seeds (relaunching skips the finished runs): `{command}`"
    if len(decidable) < len(inconclusive):
        text += (f"; {len(inconclusive) - len(decidable)} would need over 100 seeds: their differences are too close "
                 f"to the margin to decide")
    return text + "." if text else ""


def more_seeds_command(sweep: Sweep, seeds: Sequence[int], target: int) -> str | None:
    """Every launch of the sweep (the whole sweep, then any grid extension) with the seed list extended to
    ``target`` seeds per arm, as one shell line (``;`` between launches: one whose run fails still lets the next
    go); None without a command."""
    commands = sweep.commands or ([sweep.command] if sweep.command else [])
    if not commands or target <= len(seeds):
        return None
    extra = list(range(max(seeds, default=0) + 1, max(seeds, default=0) + 1 + target - len(seeds)))
    lines = [shell_line([w for w in shlex.split(c) if not w.startswith("seed=")]
                        + ["seed=" + ",".join(map(str, [*seeds, *extra]))]) for c in commands]
    return "; ".join(dict.fromkeys(lines))  # two launches can differ only in their seeds

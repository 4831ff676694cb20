"""The report's README: its sections, in order, from a built :class:`Report`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from ablate.contract import find_arm
from ablate.report.analysis import Report
from ablate.report.arms import Missing, base_arms, margin
from ablate.report.factorial import _margin, interactions, main_effects
from ablate.report.power import ALPHA
from ablate.report.text import _ci, _loss, _p, _signed, _table, _verdict, arms_table, findings, plain_words
from ablate.report.tuning import section


def reproduce(report: Report) -> str:
    """The Reproduce section: the sweep's command, the run length and sizes, and this report's command."""
    runs = report.sweep.runs
    steps = sorted({r.max_steps for r in runs if r.max_steps is not None})
    sizes = list(dict.fromkeys(", ".join(f"{k}={v}" for k, v in r.sizes.items()) for r in runs if r.sizes))
    command = "\n".join(report.sweep.commands) or report.sweep.command
    lines = ["## Reproduce", ""]
    lines += [f"```bash\n{command}\n```"] if command else ["The sweep's command is not recorded here (wandb keeps no "
                                                           "sweep.json); each run's config holds its settings."]
    lines += ["", f"Run length: {' / '.join(map(str, steps)) or 'unknown'} steps (`max_steps`). "
              f"Model sizes: {'; '.join(sizes) or 'unknown'}."]
    versions = sorted({r.version for r in runs if r.version})
    if versions:
        lines += ["", f"Code: ablate {', '.join(versions)} (version+commit, from the runs' records)."]
    hosts = Counter(r.host for r in runs if r.status in ("completed", "diverged"))
    if any(host is not None for host in hosts):  # records from before runs stated their host say nothing
        told = [f"{host}: {n} run{'s' if n > 1 else ''}" for host, n in hosts.most_common() if host]
        untold = [f"not recorded: {hosts[None]} (runs from before records stated their host)"] if hosts[None] else []
        lines += ["", f"Hosts, from the runs' records: {'; '.join([*told, *untold])}. The same run's loss differs "
                      f"slightly from one CPU's kernels to another's (by at most 0.003 nats per seed between AVX2 "
                      f"and AVX-512 hosts in `reports/founding`)."]
    if command and "hydra/launcher=parallel" in command:
        lines += ["", "Runs went two at a time on one machine (`hydra/launcher=parallel`, the cores split between "
                      "them), so tokens/s is per run while sharing the machine; the losses do not depend on it."]
    lines += ["", "This report:", "", f"```bash\n{report.sweep.source}\n```"]
    return "\n".join(lines)


def effects_section(report: Report) -> str:
    """A two-level design's effects table: each main effect and two-way interaction with its verdict."""
    design, low = report.design, report.low
    high = {axis: next(v for v in levels if v != low[axis]) for axis, levels in design.axes.items()}
    n_cells = len(design.cells)
    kind = "full factorial" if design.complete else f"fraction ({n_cells} of {design.size} combinations)"
    rows = []
    for e in report.effects:
        if " × " in e.reference:
            a, b = e.reference.split(" × ")
            what = f"`{a}` × `{b}`"
        else:
            what = f"`{e.reference}`: `{low[e.reference]}` → `{high[e.reference]}`"
        rows.append([what, _signed(e.diff), _ci(e.ci, _signed), _ci(e.ci_adj, _signed), _p(e.p), _p(e.p_adj),
                     _verdict(e), f"±{_loss(e.mde)}" if e.mde else "—"])
    m = len(report.effects)
    return "\n".join([
        "## Factorial effects", "",
        f"A two-level {kind} over {len(design.axes)} axes, {len(design.observations)} completed runs. Effects by "
        f"least squares on ±1-coded levels with one intercept per seed (a seed fixes the data order for every cell, "
        f"so it is a block); {report.effects[0].df:.0f} residual degrees of freedom. A main effect is the mean change "
        f"in final validation loss from the baseline's level to the other; an interaction A × B is half the "
        f"difference between A's effect at B's two levels (positive: the two changes together cost more than each "
        f"alone). The {m} effects are one family: adjusted p as the arms' table, the second interval at the "
        f"Bonferroni level {100 * (1 - ALPHA / m):.2f}%.", "",
        _table(["effect", "Δ", "95% CI", "corrected CI", "p", "p adj.", "verdict", "detectable Δ (80% power)"], rows),
    ])


def factorial_section(report: Report) -> str:
    """Main effects and the largest two-way interactions, for a design that covers its cross product (any number
    of levels), or the effects table of a two-level design (full or fractional)."""
    design = report.design
    if design is None:
        return ""
    if report.effects:
        return effects_section(report)
    lines = ["## Factorial effects", ""]
    if not design.complete:
        return "\n".join(lines + [
            f"The runs vary {len(design.axes)} axes ({', '.join(f'`{a}`' for a in design.axes)}) but only "
            f"{len(design.cells)} of their {design.size} combinations have completed runs, so no effects are estimated."
        ])
    effects = main_effects(design)
    ranges = {axis: max(e.values()) - min(e.values()) for axis, e in effects.items()}
    grand = _margin(design, {})
    rows = [[f"`{axis}`", _loss(ranges[axis]), f"`{level}`", _signed(value)]
            for axis in sorted(effects, key=lambda a: -ranges[a]) for level, value in effects[axis].items()]
    lines += [f"Main effects: the mean final validation loss at each level, averaged over the other axes, minus the "
              f"grand mean ({_loss(grand)}); an axis's range is its largest minus its smallest level effect.", "",
              _table(["axis", "range", "level", "effect"], rows), "",
              "Largest two-way interactions (cell mean − level means + grand mean):", "",
              _table(["axes", "levels", "interaction"],
                     [[f"`{a}` × `{b}`", f"`{la}` × `{lb}`", _signed(v)] for a, la, b, lb, v in interactions(design)])]
    return "\n".join(lines)


def missing_section(missing: Sequence[Missing]) -> str:
    """The runs that have no completed or diverged result, with the error of failed ones."""
    lines = ["## Missing runs", ""]
    if not missing:
        return "\n".join(lines + ["None: every planned run finished (completed or diverged)."])
    rows = [[f"`{m.arm}`", "—" if m.seed is None else m.seed, m.status, m.error or ""] for m in missing]
    table = _table(["arm", "seed", "status", "error"], rows)
    return "\n".join(lines + [f"{len(missing)} runs have no result:", "", table])


PLOT_TEXT = {
    "curves.png": ("Validation loss during training", "validation loss vs step per arm: mean over completed seeds, "
                   "band from the lowest to the highest seed, log scale", "no arm has a completed run with `val/loss`"),
    "deltas.png": ("Δ vs reference", "final validation loss minus the reference arm's (paired over shared seeds, "
                   "else Welch; the sweep's declared comparisons too), with its CI at the family's Bonferroni level, "
                   "coloured by verdict, the margin shaded "
                   "(Holm's step-down verdicts are a little more powerful than that interval: a bar can be coloured "
                   "with its interval just touching 0)",
                   "no arm has a tested Δ (two or more completed seeds on both sides)"),
    "lr.png": ("Final loss vs learning rate", "each arm's final validation loss against the tuned value: seeds as "
               "dots, the quadratic fit in log scale as a line, its optimum as a star, diverged runs as crosses on "
               "the top edge", "no arm has three grid values with every seed completed"),
    "diagnostics.png": ("Diagnostics", "gradient norm and attention entropy per layer at the last logged step, "
                        "mean over completed seeds", "no completed run logged `diag/grad_norm` or `diag/attn_entropy`"),
}


def plots_section(written: Sequence[str], tuned: bool = False) -> str:
    """Each plot embedded by a relative link, or a line saying why it is absent (the learning-rate plot
    only in a tuned sweep)."""
    lines = ["## Plots", ""]
    for name, (title, what, absent) in PLOT_TEXT.items():
        if name == "lr.png" and not tuned:
            continue
        body = f"![{title}]({name})\n\n{what}." if name in written else f"Skipped: {absent}."
        lines += [f"### {title}", "", body, ""]
    return "\n".join(lines).rstrip()


def tuning_section(report: Report) -> str:
    """The tuned analysis, when the sweep tuned one key."""
    if not report.tuned_arms:
        return ""
    key = next(iter(report.sweep.tune))
    whole = (report.sweep.commands or [report.sweep.command])[0]  # the first launch: the whole sweep
    return section(report.tuned_arms, report.tuned, key, whole, margin(report.sweep))


def declared_section(report: Report) -> str:
    """The comparisons the sweep declared (``sweep.compare``) beyond each arm against its reference."""
    if not report.declared:
        return ""
    pairs = ", ".join(f"`{a}` with `{r}`" for a, r in report.sweep.compare.items())
    return "\n\n".join([
        "## Declared comparisons",
        f"The sweep declares comparisons beyond parent and baseline (`sweep.compare`): {pairs}"
        + (", at each grid value" if report.sweep.tune else "") + ". They are in the arms table's family: the same "
        "tests, corrected together.",
        arms_table(report.declared)])


def render_readme(report: Report, plots: Sequence[str]) -> str:
    """The whole README: title, findings, reproduce, tables, effects, plots, missing runs."""
    note = ""
    if report.sweep.baseline and find_arm(report.sweep.baseline, base_arms(report.sweep)) is None:
        note = f" The baseline `{report.sweep.baseline}` is not an arm here, so arms compare with `{report.baseline}`."
    sections = [
        f"# Sweep report: {report.sweep.name}",
        report.sweep.preface.strip(),
        "## Findings\n\n" + "\n\n".join(filter(None, [plain_words(report), findings(report)])),
        reproduce(report),
        tuning_section(report),
        "## Arms\n\n" + ("In a tuned sweep an arm at one grid value is a row of its own, compared with its reference "
                         "at the same value. " if report.sweep.tune else "") + "One row per arm; its seeds are its "
        "replicates. Δ is the arm's mean final validation loss (whole "
        "validation split, completed seeds) minus its reference's: its parent arm for `<parent>+<change>`, otherwise "
        f"the baseline `{report.baseline}`.{note}\n\n" + arms_table(report.arms),
        declared_section(report),
        factorial_section(report),
        plots_section(plots, bool(report.sweep.tune)),
        missing_section(report.missing),
    ]
    return "\n\n".join(s for s in sections if s) + "\n"

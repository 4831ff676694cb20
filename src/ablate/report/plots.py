"""The report's plots (matplotlib's object API, no pyplot state): loss curves, Δ per arm, per-layer diagnostics."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ablate.report.analysis import Report
from ablate.report.arms import latest_runs, margin
from ablate.report.power import ALPHA
from ablate.report.records import RunData


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure  # no pyplot: no global state, renders with Agg

    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def _colors(n: int) -> list[Any]:
    """Matplotlib's default cycle for up to 10 arms; evenly spaced colours of a wide colormap beyond."""
    from matplotlib import colormaps

    return [f"C{i}" for i in range(n)] if n <= 10 else list(colormaps["turbo"](np.linspace(0, 1, n)))


def _label_width(labels: Sequence[str]) -> float:
    """Inches that the longest of these labels takes in a small font (long arm names widen the figure)."""
    return 0.5 + 0.06 * max(map(len, labels), default=0)


def _legend_width(labels: Sequence[str]) -> float:
    return (1 + len(labels) // 25) * _label_width(labels)


def _legend(ax: Any, n: int) -> None:
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1), ncols=1 + n // 25)


def _completed_by_arm(report: Report) -> dict[str, list[RunData]]:
    runs = [r for r in latest_runs(report.sweep.runs) if r.status == "completed"]
    return {a.arm: [r for r in runs if r.arm == a.arm] for a in report.arms}


def plot_curves(report: Report, path: Path) -> bool:
    """Validation loss vs step per arm (mean over seeds, min–max band); False when there is none."""
    from matplotlib.ticker import StrMethodFormatter

    by_arm = _completed_by_arm(report)
    fig = _figure(6.5 + _legend_width(list(by_arm)), 5)
    ax = fig.subplots()
    shown = []
    for color, (arm, runs) in zip(_colors(len(by_arm)), by_arm.items()):
        series = [r.metrics["val/loss"] for r in runs if r.metrics.get("val/loss")]
        steps = sorted({s for one in series for s in one})
        if not steps:
            continue
        values = [[one[s] for one in series if s in one] for s in steps]
        mean = [float(np.mean(v)) for v in values]
        ax.plot(steps, mean, color=color, label=arm, marker="." if len(steps) < 20 else None)
        ax.fill_between(steps, [min(v) for v in values], [max(v) for v in values], color=color, alpha=0.2)
        late = [m for s, m in zip(steps, mean) if s >= 0.25 * steps[-1]]
        shown.append((min(min(v) for v in values), max(late)))
    if not shown:
        return False
    low, high = min(s[0] for s in shown), max(s[1] for s in shown)
    ax.set_yscale("log")  # losses fall geometrically early on; a log axis keeps the late gaps visible
    ax.yaxis.set_major_formatter(StrMethodFormatter("{x:.2f}"))
    ax.yaxis.set_minor_formatter(StrMethodFormatter("{x:.2f}"))  # a narrow log range shows minor ticks only
    ax.set_ylim(low * 0.98, high * 1.02 if high > low else low * 1.05)  # the first quarter's high losses are cut
    ax.set(xlabel="step", ylabel="validation loss (fixed batches)", title="Validation loss per arm")
    ax.grid(True, which="both", alpha=0.3)
    _legend(ax, len(shown))
    fig.savefig(path)
    return True


def plot_deltas(report: Report, path: Path) -> bool:
    """One horizontal bar per tested comparison (each arm against its reference, then the sweep's declared ones):
    Δ final loss with its family-corrected CI, coloured by verdict, the equivalence margin shaded."""
    from matplotlib.patches import Patch

    tested = [a for a in report.arms + report.declared if a.delta is not None and a.delta.ci_adj is not None]
    if not tested:
        return False
    # the reference is named only where it is not the baseline
    labels = [a.arm if a.delta.reference == report.baseline else f"{a.arm} (vs {a.delta.reference})" for a in tested]
    fig = _figure(6.5 + _label_width(labels), 1.2 + 0.3 * len(tested))
    ax = fig.subplots()
    y = np.arange(len(tested))[::-1]
    diffs = [a.delta.diff for a in tested]
    errors = [[d - a.delta.ci_adj[0] for d, a in zip(diffs, tested)],
              [a.delta.ci_adj[1] - d for d, a in zip(diffs, tested)]]
    palette = {"worse": "C3", "better": "C2", "equivalent": "C0", "inconclusive": "C7"}
    ax.barh(y, diffs, xerr=errors, color=[palette[a.delta.verdict] for a in tested], capsize=3)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(y, labels, fontsize="small")
    ax.axvspan(-margin(report.sweep), margin(report.sweep), color="C0", alpha=0.1, linewidth=0)
    ax.legend(handles=[Patch(color=c, label=v) for v, c in palette.items()]
              + [Patch(color="C0", alpha=0.1, label=f"±{margin(report.sweep):g} margin")],
              fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.set(xlabel="Δ final validation loss (lower is better)",
           title=f"Δ vs reference (the baseline unless named), {100 * (1 - ALPHA / len(tested)):.2f}% CI "
                 f"(Bonferroni over {len(tested)})")
    fig.savefig(path)
    return True


def last_layer_values(run: RunData, prefix: str) -> list[float]:
    """``prefix/layer_<i>`` for every layer at the last step that logged them (empty if never logged)."""
    keys = sorted((k for k in run.metrics if k.startswith(prefix + "/layer_")), key=lambda k: int(k.rsplit("_", 1)[1]))
    steps = [s for s in sorted({s for k in keys for s in run.metrics[k]}) if all(s in run.metrics[k] for k in keys)]
    return [run.metrics[k][steps[-1]] for k in keys] if steps else []


def _layer_means(by_arm: dict[str, list[RunData]], prefix: str) -> dict[str, list[float]]:
    """Per arm, the mean over its seeds of ``prefix/layer_<i>`` at each seed's last logged step."""
    out = {}
    for arm, runs in by_arm.items():
        rows = [v for v in (last_layer_values(r, prefix) for r in runs) if v]
        if rows and all(len(v) == len(rows[0]) for v in rows):
            out[arm] = list(np.mean(rows, axis=0))
    return out


def plot_diagnostics(report: Report, path: Path) -> bool:
    """Gradient norm and attention entropy per layer (mean over seeds), one line per arm."""
    from matplotlib.ticker import MaxNLocator

    panels = {"diag/grad_norm": "gradient norm (before clipping)", "diag/attn_entropy": "attention entropy (nats)"}
    by_arm = _completed_by_arm(report)
    data = {prefix: _layer_means(by_arm, prefix) for prefix in panels}
    if not any(data.values()):
        return False
    colors = dict(zip(by_arm, _colors(len(by_arm))))
    fig = _figure(10 + _legend_width(list(by_arm)), 4.5)
    for ax, (prefix, label) in zip(fig.subplots(1, 2), panels.items()):
        for arm, values in data[prefix].items():
            ax.plot(range(len(values)), values, marker="o", color=colors[arm], label=arm)
        if not data[prefix]:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes)
        ax.set(xlabel="layer", ylabel=label, title=label.split(" (")[0] + " per layer")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
    _legend(fig.axes[1] if data["diag/attn_entropy"] else fig.axes[0], len(by_arm))
    fig.savefig(path)
    return True

"""``ablate-report``'s command line, and :func:`write_report`, which writes a report folder."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from ablate.atomic import atomic_write_text
from ablate.contract import find_arm
from ablate.errors import AblateError, ArgumentParser, ConfigError
from ablate.report.analysis import Report
from ablate.report.arms import base_arms
from ablate.report.compare import CORRECTIONS, MARGIN
from ablate.report.plots import plot_curves, plot_deltas, plot_diagnostics
from ablate.report.readme import render_readme
from ablate.report.records import Sweep, load_local, load_wandb
from ablate.report.tuning import plot_lr


def write_report(sweep: Sweep, out_dir: str | Path) -> Path:
    """Write README.md and the plots that have data into ``out_dir``; returns the README's path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = Report.build(sweep)
    makers = {"curves.png": plot_curves, "deltas.png": plot_deltas, "diagnostics.png": plot_diagnostics,
              "lr.png": lambda r, path: bool(r.tuned_arms) and plot_lr(r.tuned_arms, next(iter(r.sweep.tune)), path)}
    written = []
    for name, make in makers.items():
        (out / name).unlink(missing_ok=True)  # a plot left from an earlier report would contradict this one
        if make(report, out / name):
            written.append(name)
    atomic_write_text(out / "README.md", render_readme(report, written))
    return out / "README.md"


# -- command line ---------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line: a sweep folder, or a wandb project and group."""
    parser = ArgumentParser(
        prog="ablate-report",
        description="Turn a sweep (finished or not) into README.md with findings, tables and plots.",
    )
    parser.add_argument("sweep_dir", nargs="?", help="the sweep's folder (holding sweep.json and the runs)")
    parser.add_argument("--out", help="where to write the report (default: reports/<sweep name>)")
    parser.add_argument("--baseline", help="the arm to compare the others with (default: the sweep's baseline)")
    parser.add_argument("--wandb", metavar="ENTITY/PROJECT", help="read the runs from wandb instead of SWEEP_DIR")
    parser.add_argument("--group", help="with --wandb: the runs' wandb group (the sweep's name)")
    parser.add_argument("--correction", default="holm", choices=CORRECTIONS,
                        help="multiple-comparison correction: holm (family-wise error, default) or bh (false "
                             "discovery rate, Benjamini-Hochberg)")
    parser.add_argument("--preface", metavar="FILE", help="a Markdown file whose text opens the report (the study's "
                                                          "reading of its numbers, kept beside them)")
    parser.add_argument("--margin", type=float, help="the practical margin in nats (default: the sweep's, else "
                                                     f"{MARGIN})")
    args = parser.parse_args(argv)
    if bool(args.sweep_dir) == bool(args.wandb):
        parser.error("give either SWEEP_DIR or --wandb ENTITY/PROJECT --group NAME")
    if args.wandb and not args.group:
        parser.error("--wandb needs --group NAME (the sweep's name)")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point: one line ``error: ...`` and exit status 2 for anything the user can fix."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    try:
        sweep = load_wandb(args.wandb, args.group) if args.wandb else load_local(args.sweep_dir)
        sweep.source = shlex.join(["ablate-report", *argv])
        sweep.correction = args.correction
        if args.preface:
            try:
                sweep.preface = Path(args.preface).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise ConfigError(f"--preface {args.preface}: cannot read it ({e}); give a UTF-8 Markdown file") \
                    from None
        if args.margin is not None:
            if not args.margin > 0:
                raise ConfigError(f"--margin {args.margin}: give a positive number of nats, e.g. 0.01")
            sweep.margin = args.margin
        if args.baseline:
            arms = base_arms(sweep)
            if find_arm(args.baseline, arms) is None:
                raise ConfigError(f"--baseline {args.baseline!r} is not an arm; choose one of: {', '.join(arms)}")
            sweep.baseline = args.baseline
        readme = write_report(sweep, args.out or Path("reports") / sweep.name.replace("/", "_"))
    except AblateError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(f"Report: {readme}")


if __name__ == "__main__":
    main()

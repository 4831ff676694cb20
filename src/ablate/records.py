"""A run's local record, written in its output folder by every run, whatever the wandb mode.

- ``summary.json``: what ran (choices, sizes, parameters, seed, command) and how it went (status,
  best and final validation loss, tokens/s, wall time); rewritten atomically at every evaluation (before the
  checkpoint that follows it) and at the end of the run (not at every logging step: that would cost time
  growing with the run).
- ``metrics.csv``: every logged metric, one row per step, rewritten atomically with the summary.
- ``samples.txt``: the text generated at each evaluation.

These files are what ``ablate-report`` reads; wandb holds the same numbers for the UI.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers.logger import Logger
from lightning.pytorch.utilities import rank_zero_only

from ablate.atomic import atomic_write_json, atomic_write_text
from ablate.contract import METRICS, SAMPLES, SUMMARY


class RunRecord(Logger):
    """A Lightning logger that keeps the run's local record (see the module docstring)."""

    def __init__(self, out_dir: str | Path, summary: dict[str, Any], resume: bool = False) -> None:
        """``resume``: continue the record already in ``out_dir`` (its rows, best loss and wall time)."""
        super().__init__()
        self.out_dir = Path(out_dir)
        self.rows: dict[int, dict[str, float]] = {}
        self.start = time.time()
        carried: dict[str, Any] = {}
        if resume:
            self.rows = _read_rows(self.out_dir / METRICS)
            old = json.loads((self.out_dir / SUMMARY).read_text())
            carried = {k: old[k] for k in ("val_loss_best", "val_loss_last", "wall_time_s", "wandb_id") if k in old}
            self.start -= carried.get("wall_time_s", 0.0)  # wall time counts every attempt
            carried["resumed"] = old.get("resumed", 0) + 1
        self.summary: dict[str, Any] = {**summary, **carried, "status": "running"}
        self.write()

    @property
    def name(self) -> str:
        return "record"

    @property
    def version(self) -> str:
        return ""

    @property
    def save_dir(self) -> str:
        return str(self.out_dir)

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """The summary already holds the resolved config; nothing to add."""

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        step = int(step or 0)
        row = self.rows.setdefault(step, {})
        row.update({k: float(v) for k, v in metrics.items() if k not in ("epoch", "step")})
        if "val/loss" in metrics:
            loss = float(metrics["val/loss"])
            best = self.summary.get("val_loss_best")
            self.summary["val_loss_best"] = loss if best is None or loss < best else best
            self.summary["val_loss_last"] = loss
        if "final/loss" in metrics:
            self.summary["val_loss_final"] = float(metrics["final/loss"])
        if metrics.get("train/time"):  # cumulative training tokens and seconds (validation excluded)
            self.summary["tokens_per_sec"] = round(float(metrics["train/lengths"]) / float(metrics["train/time"]), 1)
        if "train/loss" in metrics:
            self.summary["steps"] = step + 1
        if any(k.startswith(("val/", "final/")) for k in metrics):
            self.write()

    @rank_zero_only
    def log_text(self, key: str, columns: list[str], data: list[list[Any]]) -> None:
        with open(self.out_dir / SAMPLES, "a", encoding="utf-8") as f:
            for step, text in data:
                f.write(f"===== step {step} =====\n{text}\n\n")

    def save(self) -> None:
        """Lightning calls this after every ``log_metrics``; rewriting the files at every logging step would
        cost time that grows with the run, so they are written at evaluations and the end instead."""

    @rank_zero_only
    def write(self) -> None:
        """Rewrite ``summary.json`` and ``metrics.csv`` atomically with everything logged so far."""
        self.summary["wall_time_s"] = round(time.time() - self.start, 2)
        atomic_write_json(self.out_dir / SUMMARY, self.summary)
        keys = sorted({k for row in self.rows.values() for k in row})
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["step", *keys])
        for step in sorted(self.rows):
            row = self.rows[step]
            writer.writerow([step, *(_fmt(row.get(k)) for k in keys)])
        atomic_write_text(self.out_dir / METRICS, buf.getvalue())

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """Lightning calls this after fit and after validate; the run's own status is set by ``close``."""
        self.write()

    @rank_zero_only
    def close(self, status: str, error: str | None = None) -> None:
        self.summary["status"] = status
        if error:
            self.summary["error"] = error
        self.write()


def _read_rows(path: Path) -> dict[int, dict[str, float]]:
    rows: dict[int, dict[str, float]] = {}
    if path.is_file():
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                step = int(row.pop("step"))
                rows[step] = {k: float(v) for k, v in row.items() if v != ""}
    return rows


def _fmt(value: float | None) -> str:
    if value is None:
        return ""
    return repr(value) if math.isfinite(value) else str(value)

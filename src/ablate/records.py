"""A run's local record, written in its output folder by every run, whatever the wandb mode.

- ``summary.json``: what ran (choices, sizes, parameters, seed, command) and how it went (status,
  best and final validation loss, tokens/s, wall time); rewritten atomically at every evaluation (before the
  checkpoint that follows it) and at the end of the run (not at every logging step: that would cost time
  growing with the run).
- ``metrics.csv``: every logged metric, one row per step, rewritten atomically with the summary.
- ``samples.txt``: the text generated at each evaluation.
- ``RunClock`` adds to ``summary.json`` the time to the first training step (also printed once) and the time
  spent evaluating, during training and at the end.

These files are what ``ablate-report`` reads; wandb holds the same numbers for the UI.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.loggers.logger import Logger
from lightning.pytorch.utilities import rank_zero_only

from ablate.atomic import atomic_write_json, atomic_write_text
from ablate.clock import PHASES, process_start, startup_parts
from ablate.contract import (
    METRICS,
    SAMPLES,
    SUMMARY,
    Rows,
    Summary,
    metric_fields,
    metrics_csv,
    read_metrics,
    read_summary,
)


class RunRecord(Logger):
    """A Lightning logger that keeps the run's local record (see the module docstring)."""

    def __init__(self, out_dir: str | Path, summary: Summary, resume: bool = False) -> None:
        """``resume``: continue the record already in ``out_dir`` (its rows, wall time and wandb run)."""
        super().__init__()
        self.out_dir = Path(out_dir)
        self.rows: Rows = {}
        self.start = time.time()
        self.steps: int | None = None  # the trainer's step count, once the run ends (see close)
        carried: dict[str, Any] = {}
        if resume:
            self.rows = read_metrics(self.out_dir)
            old = read_summary(self.out_dir)
            carried = {k: old[k] for k in ("wall_time_s", "wandb_id", "eval_time_s") if k in old}
            self.start -= carried.get("wall_time_s", 0.0)  # wall time counts every attempt
            carried["resumed"] = old.get("resumed", 0) + 1
        self.summary: Summary = {**summary, **carried, "status": "running"}
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
        row = self.rows.setdefault(int(step or 0), {})
        row.update({k: float(v) for k, v in metrics.items() if k not in ("epoch", "step")})
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
        """Rewrite ``summary.json`` (its losses, steps and speed derived from the rows, as the report derives
        them from wandb) and ``metrics.csv`` atomically with everything logged so far."""
        self.summary.update(metric_fields(self.rows))
        if self.steps is not None:
            self.summary["steps"] = self.steps
        self.summary["wall_time_s"] = round(time.time() - self.start, 2)
        atomic_write_json(self.out_dir / SUMMARY, self.summary)
        atomic_write_text(self.out_dir / METRICS, metrics_csv(self.rows))

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """Lightning calls this after fit and after validate; the run's own status is set by ``close``."""
        self.write()

    @rank_zero_only
    def close(self, status: str, error: str | None = None, steps: int | None = None) -> None:
        """The run's end: its status, the error that ended it, the steps the trainer took (which the logged
        rows may undercount, as they log every few steps)."""
        global _previous_run_end
        self.steps = steps
        self.summary["status"] = status
        if error:
            self.summary["error"] = error
        self.write()
        _previous_run_end = time.time()



# -- time to the first step, time evaluating --------------------------------------------------------------
_previous_run_end: float | None = None  # set by RunRecord.close: a process may run several runs (sweeps)


class RunClock(L.Callback):
    """Records in the run's ``summary.json`` how long the run took to reach the end of its first training step
    (``time_to_first_step_s``, printed once), counted from the process's start, or, in a process that ran a run
    before (a sweep's jobs), from that run's end, and its parts (``time_to_first_step_parts_s``: seconds per
    start-up phase, ``ablate.clock.PHASES``); and the seconds spent in evaluations during training
    (``eval_time_s``, every attempt of a resumed run) and in the final whole-split evaluation
    (``final_eval_time_s``)."""

    def __init__(self) -> None:
        self.since = _previous_run_end or process_start()
        self.first_step_done = False
        self.eval_start = 0.0

    @staticmethod
    def _record(trainer: L.Trainer) -> RunRecord | None:
        return next((lg for lg in trainer.loggers if isinstance(lg, RunRecord)), None)

    @rank_zero_only
    def on_train_batch_end(self, trainer: L.Trainer, *_: Any) -> None:
        if self.first_step_done:
            return
        self.first_step_done = True
        now = time.time()
        seconds, parts = round(now - self.since, 3), startup_parts(self.since, now)
        if (record := self._record(trainer)) is not None:
            record.summary["time_to_first_step_s"] = seconds
            record.summary["time_to_first_step_parts_s"] = parts
        since = "the previous run's end" if self.since == _previous_run_end else "the process's start"
        split = ", ".join(f"{name.replace('_', ' ')} {parts[name]:.2f}" for name in PHASES if name in parts)
        print(f"time to first training step: {seconds:.2f} s after {since} ({split})")

    @rank_zero_only
    def on_validation_start(self, *_: Any) -> None:
        self.eval_start = time.perf_counter()

    @rank_zero_only
    def on_validation_end(self, trainer: L.Trainer, *_: Any) -> None:
        if (record := self._record(trainer)) is None:
            return
        key = "eval_time_s" if trainer.state.fn == "fit" else "final_eval_time_s"
        record.summary[key] = round(record.summary.get(key, 0.0) + time.perf_counter() - self.eval_start, 3)

"""When things happen in a run's process: the process's start, and the ends of the start-up phases of the run it
is starting, which ``records.RunClock`` turns into the parts of the run's time to its first training step
(``time_to_first_step_parts_s`` in ``summary.json``), so that a slow start says where it went.

Free of heavy imports: the first phase ends before Lightning is imported."""

from __future__ import annotations

import os
import time
from pathlib import Path

_IMPORTED = time.time()
_phases: list[tuple[str, float]] = []  # (phase, when it ended), for the run this process is starting

# the phases in order, and what each covers
PHASES = {
    "launch_and_config": "the interpreter, importing ablate, torch and Hydra, checking the overrides, composing",
    "lightning_and_checks": "importing Lightning (and what it imports), checking the config, seeding",
    "data_and_model": "reading and tokenizing the data, building the model, its record's summary",
    "wandb": "starting the wandb run (offline: a local service process)",
    "trainer_setup": "the Trainer, its callbacks and optimizer, the FLOP count, Lightning's setup",
    "first_step": "the first training step itself",
}


def process_start() -> float:
    """When this process started, as Unix time: Linux's start time of the process (/proc/self/stat, in clock
    ticks since boot, against /proc/uptime); elsewhere, or where the two disagree, when this module was imported."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        start = time.time() - (uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return _IMPORTED
    # a container may show the host's boot clock in one file and its own in the other
    return start if _IMPORTED - 3600 < start <= _IMPORTED else _IMPORTED


def run_starting() -> None:
    """A run's config is composed and its start-up begins: forget an earlier run's phases (a sweep's jobs share
    a process) and mark the end of the first phase."""
    _phases.clear()
    phase_done("launch_and_config")


def phase_done(name: str) -> None:
    """Mark the end of the start-up phase ``name`` (one of ``PHASES``) of the run this process is starting."""
    if name not in PHASES:
        raise ValueError(f"unknown start-up phase {name!r}; the phases: {', '.join(PHASES)}")
    _phases.append((name, time.time()))


def startup_parts(since: float, now: float) -> dict[str, float]:
    """Seconds of each start-up phase marked since ``since``, the last (``first_step``) ending ``now``; they add up
    to ``now - since`` (to rounding). Forgets the marks: the next run marks its own."""
    parts, last = {}, since
    for name, when in _phases:
        if when >= since:
            parts[name] = round(parts.get(name, 0.0) + when - last, 3)
            last = when
    parts["first_step"] = round(now - last, 3)
    _phases.clear()
    return parts

"""The contract between a sweep, its runs and the report: what each run writes, under which names, with what status,
and what an arm is. ``ablate.records`` and ``ablate.train`` write records through it; ``ablate.report`` reads them
through it; the sweeper derives arms with it."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

# what every run writes in its folder, and what a sweep writes in its own (read by ablate-report)
SUMMARY, METRICS, SAMPLES, PLAN = "summary.json", "metrics.csv", "samples.txt", "sweep.json"
# a run's status is running, completed, diverged, failed or interrupted; a relaunched sweep skips
# FINISHED runs and resumes the others
STATUSES = ("running", "completed", "diverged", "failed", "interrupted")
FINISHED = ("completed", "diverged")

Rows = dict[int, dict[str, float]]  # metrics.csv: step -> {metric: value}


# -- arms -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Arm:
    """Where a run sits in its sweep, as the sweeper derived it from the sweep file's override lists.

    ``name`` is the row a report gives it: the declared arm's name, then the values of any other swept keys
    (``gpt2+norm=post lr=0.001``). ``parent`` is the row it changes (the declared arm whose overrides are the
    largest subset of its own, at the same values of the other swept keys), None for a root arm. ``changes``
    are the overrides it adds to its parent, slot -> variant (``model/norm: post``) or key -> value
    (``model.tie_embeddings: "false"``), as written; a root arm's are all of its own. ``grid`` holds the
    other swept keys' values (``optim.lr: "0.001"``), the levels of a grid sweep."""

    name: str
    parent: str | None = None
    changes: dict[str, str] = field(default_factory=dict)
    grid: dict[str, str] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        """The arm as ``summary.json`` and ``sweep.json`` hold it."""
        return {"name": self.name, "parent": self.parent, "changes": dict(self.changes), "grid": dict(self.grid)}

    @classmethod
    def from_record(cls, value: Mapping[str, Any]) -> Arm:
        def strings(pairs: Any) -> dict[str, str]:
            return {str(k): str(v) for k, v in (pairs or {}).items()}

        return cls(str(value["name"]), value.get("parent"), strings(value.get("changes")), strings(value.get("grid")))


def arm_of(value: Any) -> tuple[str | None, Arm | None]:
    """A record's ``arm`` field as (name, structure). Records written before arms were structured hold the
    name alone (a string): their structure is None."""
    if isinstance(value, Mapping):
        arm = Arm.from_record(value)
        return arm.name, arm
    return (str(value) if value else None), None


def derive_arms(declared: Mapping[str, Sequence[tuple[str, str]]]) -> dict[str, Arm]:
    """Each declared arm's parent and changes, from its overrides as (key, value) pairs in the sweep file's order.

    The parent is the arm whose overrides are the largest proper subset of this arm's; among equals, the one
    sharing the longest leading run of this arm's list, then the first declared. ``gpt2+norm=post: [model=gpt2,
    model/norm=post]`` has the parent ``gpt2: [model=gpt2]`` and the changes ``{model/norm: post}``."""
    arms = {}
    for name, pairs in declared.items():
        own = set(pairs)
        subsets = [other for other, theirs in declared.items() if other != name and set(theirs) < own]
        parent = max(subsets, key=lambda o: (len(set(declared[o])), _shared_prefix(declared[o], pairs)), default=None)
        inherited = set(declared[parent]) if parent is not None else set()
        arms[name] = Arm(name, parent, {k: v for k, v in pairs if (k, v) not in inherited})
    return arms


def _shared_prefix(a: Sequence[Any], b: Sequence[Any]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def short_key(key: str) -> str:
    """``model/norm`` -> ``norm``, ``optim.lr`` -> ``lr``: how labels and reports name a key."""
    return key.replace("/", ".").split(".")[-1]


def find_arm(requested: str | None, arms: Iterable[str]) -> str | None:
    """The arm named ``requested``, the order of its space-separated words aside
    (``lr=0.001 norm=pre`` names ``norm=pre lr=0.001``); None if there is none."""
    words = sorted((requested or "").split())
    return next((arm for arm in arms if arm == requested or sorted(arm.split()) == words), None)


# -- summary.json ---------------------------------------------------------------------------------
class Summary(TypedDict, total=False):
    """``summary.json``: what ran and how it went. Written by :mod:`ablate.records`, read by the report."""

    run_id: str  # ablate.train.run_identity: a relaunch skips a FINISHED run with the same id
    name: str  # the run's name in wandb
    sweep: str | None
    arm: dict[str, Any] | str | None  # Arm.record(); a string in records written before arms were structured
    baseline: str | None
    margin: float | None  # the sweep's practical margin (nats)
    compare: dict[str, str]  # comparisons the sweep declared beyond parent and baseline: arm -> reference
    tune: dict[str, Any]  # the tuned keys' values at this run: {"optim.lr": 0.001}
    preset: str | None
    choices: dict[str, str]  # slot -> variant
    flags: dict[str, Any]  # bias, tie_embeddings, ...: architecture beyond the slots
    sizes: dict[str, int]
    vocab_size: int
    tokenizer: str
    data: str
    n_params: int
    seed: int
    max_steps: int
    command: str
    version: str  # ablate's version and commit
    output_dir: str
    runtime: dict[str, Any]
    wandb_id: str
    resumed: int  # how many times the run was resumed
    status: str  # one of STATUSES
    error: str
    # derived from the logged metrics by metric_fields
    steps: int
    val_loss_best: float
    val_loss_last: float
    val_loss_final: float
    tokens_per_sec: float
    wall_time_s: float
    # timed by records.RunClock
    time_to_first_step_s: float  # from the process's start (or the previous run's end in the same process)
    time_to_first_step_parts_s: dict[str, float]  # seconds per start-up phase (ablate.clock.PHASES)
    eval_time_s: float  # evaluations during training, every attempt
    final_eval_time_s: float  # the final whole-split evaluation


def read_summary(run_dir: Path) -> dict[str, Any]:
    """A run folder's ``summary.json``; {} where there is none (or none that parses)."""
    try:
        return json.loads((Path(run_dir) / SUMMARY).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def metric_fields(rows: Rows) -> dict[str, Any]:
    """The summary fields derived from the logged metrics: best, last and final validation loss, steps trained,
    training tokens per second (``train/lengths`` over ``train/time``: cumulative, validation excluded).
    Fields without data are left out."""
    def series(key: str) -> dict[int, float]:
        return {step: row[key] for step, row in rows.items() if key in row}

    val, final, train = series("val/loss"), series("final/loss"), series("train/loss")
    time, lengths = series("train/time"), series("train/lengths")
    timed = [s for s, t in time.items() if t and s in lengths]
    fields = {
        "val_loss_best": min(val.values()) if val else None,
        "val_loss_last": val[max(val)] if val else None,
        "val_loss_final": final[max(final)] if final else None,
        "steps": max(train) + 1 if train else None,
        "tokens_per_sec": round(lengths[max(timed)] / time[max(timed)], 1) if timed else None,
    }
    return {k: v for k, v in fields.items() if v is not None}


# -- metrics.csv ----------------------------------------------------------------------------------
def metrics_csv(rows: Rows) -> str:
    """``metrics.csv``: a ``step`` column, one column per metric (sorted), one row per step, empty where a step
    did not log a metric; values as ``repr`` (exact round trip), non-finite ones as ``nan``/``inf``."""
    keys = sorted({k for row in rows.values() for k in row})
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["step", *keys])
    for step in sorted(rows):
        writer.writerow([step, *(_fmt(rows[step].get(k)) for k in keys)])
    return buf.getvalue()


def parse_metrics(text: str) -> Rows:
    """``metrics.csv``'s text as step -> {metric: value}."""
    rows: Rows = {}
    for row in csv.DictReader(io.StringIO(text)):
        step = int(row.pop("step"))
        rows[step] = {k: float(v) for k, v in row.items() if v != ""}
    return rows


def read_metrics(run_dir: Path) -> Rows:
    """A run folder's ``metrics.csv`` (no rows where there is none)."""
    path = Path(run_dir) / METRICS
    return parse_metrics(path.read_text(encoding="utf-8")) if path.is_file() else {}


def by_metric(rows: Rows) -> dict[str, dict[int, float]]:
    """Rows as metric -> {step: value}, what curves and plots want."""
    out: dict[str, dict[int, float]] = {}
    for step in sorted(rows):
        for key, value in rows[step].items():
            out.setdefault(key, {})[step] = value
    return out


def _fmt(value: float | None) -> str:
    if value is None:
        return ""
    return repr(value) if math.isfinite(value) else str(value)

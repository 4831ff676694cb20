"""Run records as the report reads them: one :class:`RunData` per run, from the local record every run writes
(``summary.json``, ``metrics.csv``, read through :mod:`ablate.contract`) or from wandb, gathered into a
:class:`Sweep`."""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ablate.contract import METRICS, PLAN, SUMMARY, Arm, Rows, arm_of, by_metric, metric_fields, parse_metrics
from ablate.errors import ConfigError, DataError
from ablate.report.shell import shell_line

MULTIRUN = "multirun.yaml"  # Hydra's copy of the sweep's config
SIZES = ("n_layer", "n_head", "n_embd", "block_size")


# -- run records ----------------------------------------------------------------------------------
@dataclass
class RunData:
    """One run as the report needs it, whichever loader read it: summary fields plus its metrics."""

    arm: str
    seed: int | None = None
    status: str = "running"  # completed | diverged | failed | running
    name: str = ""
    baseline: str | None = None
    preset: str | None = None
    choices: dict[str, str] = field(default_factory=dict)
    flags: dict[str, Any] = field(default_factory=dict)  # bias, tie_embeddings, ...: architecture beyond the slots
    sizes: dict[str, int] = field(default_factory=dict)
    n_params: int | None = None
    max_steps: int | None = None
    command: str | None = None
    version: str | None = None  # ablate's version and commit that made the run
    host: str | None = None  # what it ran on (host_of its runtime); None in records from before runs stated it
    error: str | None = None
    tune: dict[str, float] = field(default_factory=dict)  # the tuned keys' values: {"optim.lr": 0.001}
    base_arm: str = ""  # the arm without its grid point (``arm`` adds it in a tuned sweep)
    structure: Arm | None = None  # the arm as the sweeper derived it; None in records from before it did
    margin: float | None = None  # the sweep's practical margin (nats)
    compare: dict[str, str] = field(default_factory=dict)  # the sweep's declared comparisons: arm -> reference
    steps: int | None = None
    val_loss_best: float | None = None
    val_loss_last: float | None = None
    val_loss_final: float | None = None
    tokens_per_sec: float | None = None
    wall_time_s: float | None = None
    metrics: dict[str, dict[int, float]] = field(default_factory=dict)  # metric -> {step: value}


@dataclass
class Sweep:
    """The runs found, and the (arm, seed) pairs the sweep planned where its plan is known."""

    name: str
    runs: list[RunData]
    planned: list[tuple[str, int | None]] = field(default_factory=list)
    baseline: str | None = None
    command: str | None = None
    commands: list[str] = field(default_factory=list)  # every launch into the sweep's folder, first to last
    source: str = ""  # the ablate-report command that regenerates the report
    tune: dict[str, list[float]] = field(default_factory=dict)  # the tuned keys and their grids
    cells: dict[str, tuple[str, str]] = field(default_factory=dict)  # tuned sweep: cell -> (arm, grid point)
    arms: dict[str, Arm] = field(default_factory=dict)  # each arm's structure (parent, changes), where recorded
    margin: float | None = None  # the practical margin the sweep declared (None: MARGIN)
    compare: dict[str, str] = field(default_factory=dict)  # comparisons declared beyond parent and baseline
    correction: str = "holm"  # holm | bh
    preface: str = ""  # the study's own words, placed before the findings (ablate-report --preface FILE)


def point_label(tune: dict[str, Any]) -> str:
    """A run's grid point in words: ``{"optim.lr": 0.001}`` -> ``lr=0.001``."""
    return " ".join(f"{key.split('.')[-1]}={value}" for key, value in tune.items())


def cell(arm: str, tune: dict[str, Any]) -> str:
    """What tables group a run by: its arm, and in a tuned sweep its grid point (``gpt2 lr=0.001``), so the
    runs of an arm at one learning rate are its replicates there and ``gpt2+norm=post lr=0.001`` compares
    with ``gpt2 lr=0.001``."""
    return " ".join(filter(None, [arm, point_label(tune)]))


def _arm_name(arm: str | None, name: str | None, seed: Any) -> str:
    """A run outside a sweep has no arm: its name without the seed suffix stands in."""
    if arm:
        return arm
    return name.removesuffix(f"-s{seed}") if name else "run"


def host_of(runtime: dict[str, Any] | None) -> str | None:
    """What a run ran on, from its record's ``runtime``: the GPU, or the CPU with the vector kernels PyTorch picked
    on it (``AMD EPYC (AVX2)``); None where the record does not say (runs from before ablate recorded it)."""
    runtime = runtime or {}
    if runtime.get("device") not in (None, "cpu"):
        return runtime["device"]
    if not runtime.get("cpu"):
        return None
    return f"{runtime['cpu']} ({runtime['cpu_capability']})" if runtime.get("cpu_capability") else runtime["cpu"]


def run_from_files(summary: dict[str, Any], metrics_csv: str) -> RunData:
    """A run from its local record: the fields of ``summary.json`` and the rows of ``metrics.csv``."""
    known = {f.name for f in fields(RunData)} - {"arm", "status", "metrics", "structure", "host"}
    values = {k: summary[k] for k in known if summary.get(k) is not None}
    name, structure = arm_of(summary.get("arm"))
    base = _arm_name(name, summary.get("name"), summary.get("seed"))
    values["base_arm"] = base
    values["host"] = host_of(summary.get("runtime"))
    return RunData(arm=cell(base, summary.get("tune") or {}), status=summary.get("status") or "running",
                   structure=structure, metrics=by_metric(parse_metrics(metrics_csv)), **values)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        return float(value)  # wandb may hand back "NaN" / "Infinity" as strings
    except ValueError:
        return None


def rows_from_history(history: Iterable[dict[str, Any]]) -> Rows:
    """wandb history rows as step -> {metric: value}, keyed by Lightning's step like ``metrics.csv``."""
    rows: Rows = {}
    for row in history:
        step = row.get("trainer/global_step", row.get("_step"))
        for key, value in row.items():
            number = _number(value)
            if step is None or number is None or key.startswith("_") or key in ("trainer/global_step", "epoch", "step"):
                continue
            rows.setdefault(int(step), {})[key] = number
    return rows


def run_from_wandb(
    config: dict[str, Any], summary: dict[str, Any], history: Iterable[dict[str, Any]], name: str = ""
) -> RunData:
    """A run from what wandb keeps: its config (flat slot keys plus the resolved config), its summary
    (which holds ``status``) and its history rows. Pure, so it is tested on an offline run."""
    rows = rows_from_history(history)
    model, sweep = config.get("model") or {}, config.get("sweep") or {}
    tune = {key: _select(config, key) for key in sweep.get("tune") or []}
    # runs from before the sweeper handed runs their arm's structure have sweep.arm alone
    structure = Arm.from_record({**sweep, "name": sweep["arm"]}) if sweep.get("arm") and "changes" in sweep else None
    base = _arm_name(config.get("arm") or sweep.get("arm"), name, config.get("seed"))
    return RunData(
        arm=cell(base, tune),
        base_arm=base,
        structure=structure,
        tune=tune,
        margin=sweep.get("margin"),
        compare=dict(sweep.get("compare") or {}),
        seed=config.get("seed"),
        status=summary.get("status") or "running",
        name=name,
        baseline=sweep.get("baseline"),
        preset=config.get("preset"),
        choices={k: v["name"] for k, v in model.items() if isinstance(v, dict) and "name" in v},
        flags=config.get("flags") or {},
        sizes={k: model[k] for k in SIZES if k in model},
        n_params=config.get("n_params"),
        max_steps=(config.get("trainer") or {}).get("max_steps"),
        command=config.get("command"),
        host=host_of(config.get("runtime")),
        error=summary.get("error"),
        wall_time_s=_number(summary.get("_runtime")),
        metrics=by_metric(rows),
        **metric_fields(rows),
    )


def _select(config: dict[str, Any], key: str) -> Any:
    """``optim.lr`` from a nested config dict."""
    node: Any = config
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


# -- loaders --------------------------------------------------------------------------------------
def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: unreadable ({e}); expected the JSON that ablate-train writes") from None


def _summary_paths(root: Path) -> list[Path]:
    """Every run's summary below ``root``, except earlier runs kept aside in ``replaced-*`` folders."""
    paths = sorted(root.rglob(SUMMARY))
    return [p for p in paths if not any(part.startswith("replaced-") for part in p.relative_to(root).parts)]


def _hydra_overrides(root: Path) -> list[str]:
    """Hydra's own overrides of the sweep (``-m`` shows as ``hydra.mode=MULTIRUN``), from multirun.yaml."""
    import yaml

    try:
        saved = yaml.safe_load((root / MULTIRUN).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return []
    return list(((saved.get("hydra") or {}).get("overrides") or {}).get("hydra") or [])


def full_command(command: str, hydra_overrides: Sequence[str]) -> str:
    """sweep.json's command as a shell line that reruns it. Since the sweeper writes each launch's Hydra overrides
    into its command (``-m`` and all), such a command is complete; an older plan's command (without ``-m``) gets
    the Hydra overrides multirun.yaml kept. Words are quoted for the shell, with double quotes where that reads
    better (``"hydra.sweeper.only=['gpt2+norm=post']"``)."""
    words = shlex.split(command)
    if "-m" not in words:
        multirun = ["-m"] * ("hydra.mode=MULTIRUN" in hydra_overrides)
        extra = [o for o in hydra_overrides if o != "hydra.mode=MULTIRUN" and o not in words]
        words = [*words[:1], *multirun, *words[1:], *extra]
    return shell_line(words)


def load_local(sweep_dir: str | Path) -> Sweep:
    """A sweep from its folder: ``sweep.json`` (the plan) and every run's ``summary.json``/``metrics.csv``."""
    root = Path(sweep_dir)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder; give a sweep's folder (the one holding {PLAN})")
    plan = _read_json(root / PLAN) if (root / PLAN).is_file() else {}
    runs = []
    for path in _summary_paths(root):
        metrics = path.with_name(METRICS)
        runs.append(run_from_files(_read_json(path), metrics.read_text(encoding="utf-8") if metrics.is_file() else ""))
    jobs = plan.get("jobs") or []
    planned = [(cell(str(job["arm"]), job.get("point") or {}), job.get("seed")) for job in jobs]
    cells = {cell(str(j["arm"]), j["point"]): (str(j["arm"]), point_label(j["point"])) for j in jobs if j.get("point")}
    if not runs and not planned:
        raise DataError(f"{root}: no runs in it (no {SUMMARY} below it, no planned jobs in a {PLAN})")
    command = plan.get("command") or (runs[0].command if len(runs) == 1 else None)
    return Sweep(
        name=plan.get("name") or root.resolve().name,
        runs=runs,
        planned=planned,
        baseline=plan.get("baseline") or next((r.baseline for r in runs if r.baseline), None),
        command=full_command(command, _hydra_overrides(root)) if command else None,
        commands=[full_command(c, _hydra_overrides(root)) for c in plan.get("commands") or []],
        cells={**cells, **_cells(runs)},
        arms={**{name: Arm.from_record(arm) for name, arm in (plan.get("arms") or {}).items()}, **_arms(runs)},
        tune=plan.get("tune") or _grid(runs),
        margin=plan.get("margin", next((r.margin for r in runs if r.margin is not None), None)),
        compare=plan.get("compare", _declared(runs)),
    )


def _declared(runs: Sequence[RunData]) -> dict[str, str]:
    """The comparisons the sweep declared, as its runs recorded them (where no plan says it)."""
    return next((r.compare for r in runs if r.compare), {})


def _arms(runs: Sequence[RunData]) -> dict[str, Arm]:
    """The arms' structures as the runs recorded them, by arm (without its grid point)."""
    return {r.base_arm: r.structure for r in runs if r.structure is not None}


def _cells(runs: Sequence[RunData]) -> dict[str, tuple[str, str]]:
    return {r.arm: (r.base_arm, point_label(r.tune)) for r in runs if r.tune}


def _grid(runs: Sequence[RunData]) -> dict[str, list[float]]:
    """The tuned keys and their values, from the runs (where no plan says it)."""
    keys = list(dict.fromkeys(k for r in runs for k in r.tune))
    return {k: sorted({r.tune[k] for r in runs if k in r.tune}) for k in keys}


def load_wandb(path: str, group: str) -> Sweep:
    """A sweep from the wandb public API: the runs of ``path`` (entity/project) in ``group``."""
    if path.count("/") != 1:
        raise ConfigError(f"--wandb {path!r}: give ENTITY/PROJECT, e.g. my-team/ablate")
    import wandb

    try:
        found = wandb.Api().runs(path, filters={"group": group})
        runs = [
            run_from_wandb(
                dict(r.config), {"status": _state_status(r.state), **dict(r.summary.items())}, r.scan_history(), r.name
            )
            for r in found
        ]
    except (wandb.errors.Error, ValueError) as e:
        raise DataError(f"cannot read wandb runs of {path} group {group!r}: {e}") from None
    if not runs:
        raise DataError(f"no runs in wandb project {path} with group {group!r}; the group is the sweep's name")
    baseline = next((r.baseline for r in runs if r.baseline), None)
    margin = next((r.margin for r in runs if r.margin is not None), None)
    return Sweep(name=group, runs=runs, baseline=baseline, tune=_grid(runs), margin=margin, cells=_cells(runs),
                 arms=_arms(runs), compare=_declared(runs))


def _state_status(state: str) -> str:
    """A run's status when it never recorded one (it crashed before the end): from wandb's state."""
    return "running" if state == "running" else "failed"

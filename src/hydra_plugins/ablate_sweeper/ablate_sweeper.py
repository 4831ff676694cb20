"""The ``ablate`` sweeper: Hydra's basic sweeper plus *arms*, named lists of overrides.

An ablation is rarely a full grid: "GPT-2, the seed, and every single-slot change between them" is a
list. A sweep file names each arm; every arm is crossed with the grid of ``params`` and of the
command line's own sweeps (``seed=1,2,3``)::

    hydra:
      sweeper:
        arms:
          gpt2: [model=gpt2]
          gpt2+norm=post: [model=gpt2, model/norm=post]
        params:
          seed: 1,2,3

Each job gets ``sweep.arm``: the arm's name plus the values of the other swept keys (the seed
aside), which names the run in wandb and groups its seeds in reports; and the arm's structure
(:class:`ablate.contract.Arm`), derived here from the override lists: ``sweep.parent`` (the arm whose
overrides are the largest subset of its own: ``gpt2`` for ``gpt2+norm=post``), ``sweep.changes`` (what it
adds to its parent, ``{model/norm: post}``) and ``sweep.grid`` (the other swept keys' values). Runs write it
into their records and reports read it from there. A declared ``sweep.baseline`` must name one of the arms, and
so must both sides of each comparison declared in ``sweep.compare`` (arm -> the arm to compare it with).
Jobs are launched through whichever launcher is configured; a job that fails does not stop the others.

``tune`` crosses every arm with a grid of training settings (a learning-rate grid) whose points are
not part of the arm: the runs of one arm at one point are its replicates there, and the report fits
each arm's loss against the tuned setting to compare arms at their own best::

    hydra:
      sweeper:
        tune:
          optim.lr: [3e-4, 6e-4, 1e-3, 2e-3, 4e-3]

Each job then gets ``sweep.tune`` (the tuned keys) and ``sweep.point`` (its point as a folder name,
``lr=0.001/``, between the arm's folder and the seed's). A tuned key given on the command line
(``optim.lr=8e-3,1.6e-2``) replaces its grid: that is how a grid is extended past an edge.

``only`` launches some of the arms (``"hydra.sweeper.only=['gpt2+norm=post']"``): the others stay in the
sweep's plan and in the check of its baseline and declared comparisons, so extending one arm's grid runs that
arm's new points alone.
"""

import json
import logging
import shlex
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional  # noqa: UP035 (OmegaConf needs typing's generics)

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import DictConfig, OmegaConf

from ablate.atomic import atomic_write_json
from ablate.config import tune_values
from ablate.contract import PLAN, SUMMARY, Arm, derive_arms, find_arm, short_key

log = logging.getLogger(__name__)

# keys that vary between jobs without changing what a job *is* (its seeds are grouped together)
_NOT_IN_LABEL = {"seed"}


@dataclass
class AblateSweeperConf:
    _target_: str = "hydra_plugins.ablate_sweeper.ablate_sweeper.AblateSweeper"
    max_batch_size: Optional[int] = None  # noqa: UP045
    params: Optional[Dict[str, str]] = None  # noqa: UP006, UP045
    arms: Optional[Dict[str, List[str]]] = None  # noqa: UP006, UP045
    tune: Dict[str, Any] = field(default_factory=dict)  # noqa: UP006
    only: Optional[List[str]] = None  # noqa: UP006, UP045


ConfigStore.instance().store(group="hydra/sweeper", name="ablate", node=AblateSweeperConf, provider="ablate")


def _label(arm: str, grid: dict[str, str]) -> str:
    """A row's name: the arm's, then the other swept keys' values (``gpt2+norm=post lr=0.001``)."""
    return " ".join([arm] * bool(arm) + [f"{short_key(k)}={v}" for k, v in grid.items()]) or "run"


def _quote(text: str) -> str:
    """``text`` as a quoted Hydra string, so that a job receives it as written: Hydra unescapes a backslash only
    where backslashes precede a quote (the closing one included), so only those are doubled."""
    out, run = [], 0  # run: the backslashes just written
    for char in text:
        if char == "'":
            out.append("\\" * run + "\\")  # double the backslashes before a quote, then escape the quote
        out.append(char)
        run = run + 1 if char == "\\" else 0
    return "'" + "".join(out) + "\\" * run + "'"


def _mapping(values: dict[str, str]) -> str:
    """``{model/norm: 'post'}``: a dict override whose values stay strings."""
    return "{" + ",".join(f"{k}:{_quote(v)}" for k, v in values.items()) + "}"


def _arm_overrides(arm: Arm) -> list[str]:
    """The overrides that hand a job its arm (``sweep.arm``, ``sweep.parent``, ``sweep.changes``, ``sweep.grid``)."""
    parent = "null" if arm.parent is None else _quote(arm.parent)
    # ++: Hydra would merge a dict into the empty one under the struct flag, which refuses new keys
    return [f"sweep.arm={_quote(arm.name)}", f"sweep.parent={parent}", f"++sweep.changes={_mapping(arm.changes)}",
            f"++sweep.grid={_mapping(arm.grid)}"]


def arm_structure(arms: dict[str, list[str]]) -> dict[str, Arm]:
    """Each declared arm's parent and changes (:func:`ablate.contract.derive_arms`), from its overrides as written."""
    parse = OverridesParser.create().parse_overrides
    return derive_arms({arm: [(o.key_or_group, o.input_line.partition("=")[2]) for o in parse(list(overrides))]
                        for arm, overrides in arms.items()})


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{optim: {lr: [...]}}`` (how a command line writes it) -> ``{"optim.lr": [...]}`` (how a sweep file does)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) or OmegaConf.is_dict(value):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _status(job: JobReturn) -> str:
    """A job's status as its run recorded it (completed, diverged, failed)."""
    try:
        summary = json.loads((Path(job.hydra_cfg.hydra.runtime.output_dir) / SUMMARY).read_text())
    except (OSError, ValueError, AttributeError):
        return "failed" if job.status == JobStatus.FAILED else "unknown"
    return summary.get("status", "unknown")


class AblateSweeper(BasicSweeper):
    def __init__(
        self,
        max_batch_size: int | None = None,
        params: dict[str, str] | None = None,
        arms: dict[str, list[str]] | None = None,
        tune: dict[str, Any] | None = None,
        only: list[str] | None = None,
    ) -> None:
        super().__init__(max_batch_size=max_batch_size, params=params)
        self.arms: dict[str, list[str]] = {k: list(v) for k, v in (arms or {}).items()}
        self.tune: dict[str, str] = {k: tune_values(v) for k, v in _flat(tune or {}).items()}
        self.only: list[str] | None = list(only) if only is not None else None
        self.structure: dict[str, Arm] = {}  # every row's arm, by name, as job_overrides derived it

    def job_overrides(self, arguments: list[str]) -> list[list[str]]:
        """Every job's overrides: each arm (or none) crossed with the grid, plus its ``sweep.arm`` label."""
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        tune = [f"{k}={v}" for k, v in self.tune.items()]
        tuned = [o.get_key_element() for o in parser.parse_overrides(tune)]
        given = {o.get_key_element() for o in parser.parse_overrides(list(arguments))}
        # a tuned key on the command line (optim.lr=8e-3,1.6e-2) replaces its grid and stays tuned
        base = self._parse_config() + [t for t, k in zip(tune, tuned) if k not in given] + list(arguments)
        structure = arm_structure(self.arms)
        self.check_only()
        jobs, self.structure = [], {}
        for arm, arm_overrides in (self.arms or {"": []}).items():
            overrides = parser.parse_overrides(base + arm_overrides)
            fixed = {o.get_key_element() for o in parser.parse_overrides(arm_overrides)}
            varying = [
                o.get_key_element() for o in overrides
                if o.is_sweep_override() and o.get_key_element() not in _NOT_IN_LABEL | fixed | set(tuned)
            ]
            for job in self.split_arguments(overrides, None)[0]:
                values = dict(item.split("=", 1) for item in job)
                grid = {k.lstrip("+~"): values[k] for k in varying}
                own = structure.get(arm, Arm(arm))
                row = Arm(_label(arm, grid), own.parent and _label(own.parent, grid), own.changes, grid)
                self.structure[row.name] = row
                if self.only is not None and arm not in self.only:
                    continue
                point = "".join(f"{short_key(k)}={values[k]}/" for k in tuned if k in values)
                tune = [f"sweep.tune=[{','.join(tuned)}]", f"sweep.point='{point}'"] if tuned else []
                jobs.append([*job, *_arm_overrides(row), *tune])
        return jobs

    def check_only(self) -> None:
        """``only`` names arms of the sweep: one line naming an unknown one and the arms, exit status 2."""
        unknown = [name for name in self.only or [] if name not in self.arms]
        if unknown:
            name = self.config.sweep.get("name")
            print(f"error: hydra.sweeper.only={unknown[0]!r} is not an arm of "
                  f"{f'sweeps={name}' if name else 'this sweep'}; choose from: {', '.join(self.arms) or 'none'}",
                  file=sys.stderr)
            sys.exit(2)

    def check_declared_arms(self) -> None:
        """A declared baseline, and both sides of each declared comparison, must be arms of the sweep (the order of
        their words aside): one line naming the first that is not and the arms, exit status 2, before anything is
        written."""
        compare = self.config.sweep.get("compare") or {}
        declared = [("sweep.baseline", self.config.sweep.get("baseline"))]
        declared += [(f"sweep.compare.{arm}", arm) for arm in compare]
        declared += [(f"sweep.compare.{arm}", ref) for arm, ref in compare.items()]
        for key, value in declared:
            if value and find_arm(value, self.structure) is None:
                name = self.config.sweep.get("name")
                print(f"error: {key}={value!r} is not an arm of {f'sweeps={name}' if name else 'this sweep'}; "
                      f"choose one of: {', '.join(self.structure)}", file=sys.stderr)
                sys.exit(2)

    def write_plan(self, sweep_dir: Path, arguments: list[str], jobs: list[list[str]],
                   configs: list[DictConfig]) -> None:
        """``sweep.json``: the commands, the baseline and every run the sweep will make (reports use it to
        say which runs are missing). A relaunch that adds seeds or grid points into the same folder adds
        its runs and its command to those already planned there."""
        planned = []
        for job, cfg in zip(jobs, configs):
            point = {k: OmegaConf.select(cfg, k) for k in cfg.sweep.tune}
            planned.append({"arm": cfg.sweep.arm, "seed": cfg.seed, "point": point, "dir": cfg.hydra.sweep.subdir,
                            "overrides": job})
        # the command that reruns the sweep, Hydra's own overrides (launcher, folder) included
        command = shlex.join(["ablate-train", "-m", *self.config.hydra.overrides.hydra, *arguments])
        try:
            earlier = json.loads((sweep_dir / PLAN).read_text())
        except (OSError, ValueError):
            earlier = {}
        arms = {name: arm.record() for name, arm in self.structure.items()}
        if earlier.get("name") == self.config.sweep.get("name"):
            dirs = {job["dir"] for job in planned}
            planned = [job for job in earlier.get("jobs") or [] if job["dir"] not in dirs] + planned
            commands = [c for c in earlier.get("commands") or [earlier.get("command")] if c and c != command]
            arms = {**(earlier.get("arms") or {}), **arms}
        else:
            commands = []
        plan = {
            "name": self.config.sweep.get("name"),
            "baseline": self.config.sweep.get("baseline"),
            "margin": self.config.sweep.get("margin"),
            "compare": dict(self.config.sweep.get("compare") or {}),
            "tune": {k: sorted({job["point"][k] for job in planned if k in job.get("point", {})})
                     for k in (planned[-1].get("point") or {})} if planned else {},
            "command": command,
            "commands": [*commands, command],
            "arms": arms,
            "jobs": planned,
        }
        atomic_write_json(sweep_dir / PLAN, plan)

    def skip_finished(self, jobs: list[list[str]], configs: list[DictConfig]) -> tuple[list[list[str]], Counter]:
        """The jobs still to launch, and the statuses of those whose finished run is already in its folder:
        a relaunched sweep passes over them here, without starting a process for each."""
        from ablate.train import skip_if_finished

        todo, skipped = [], Counter()
        for job, cfg in zip(jobs, configs):
            record = skip_if_finished(cfg, Path(cfg.hydra.sweep.dir) / cfg.hydra.sweep.subdir)
            if record is None:
                todo.append(job)
            else:
                skipped[record["status"]] += 1
        return todo, skipped

    def sweep(self, arguments: list[str]) -> Any:
        jobs = self.job_overrides(arguments)
        self.check_declared_arms()
        configs = [self.hydra_context.config_loader.load_sweep_config(self.config, list(job)) for job in jobs]
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        self.write_plan(sweep_dir, arguments, jobs, configs)
        todo, statuses = self.skip_finished(jobs, configs)
        size = self.max_batch_size or len(todo) or 1
        self.overrides = [todo[i : i + size] for i in range(0, len(todo), size)]
        log.info(f"Sweep of {len(jobs)} runs into {sweep_dir}"
                 + (f": {sum(statuses.values())} already finished, {len(todo)} to run" if statuses else ""))

        returns, first_failure, start, job_idx = [], None, time.perf_counter(), 0
        while not self.is_done():
            batch = self.get_job_batch()
            self.validate_batch_is_legal(batch)
            results = self.launcher.launch(batch, initial_job_idx=job_idx)
            job_idx += len(batch)
            returns.append(results)
            for r in results:
                if r.status == JobStatus.FAILED and first_failure is None:
                    first_failure = r
        statuses += Counter(_status(r) for batch in returns for r in batch)
        log.info(
            f"Sweep done in {time.perf_counter() - start:.0f} s: "
            + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))
            + f". Report: ablate-report {sweep_dir}"
        )
        if first_failure is not None:
            _ = first_failure.return_value  # re-raises the first failure: the sweep exits non-zero
        return returns

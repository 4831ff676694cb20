"""``ablate-train``: the Hydra entry point over ``conf/`` (``python -m ablate.train`` works too)."""

from __future__ import annotations

import atexit
import gc
import hashlib
import json
import logging
import netrc
import os
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import OverrideParseException
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from ablate.atomic import atomic_write_json
from ablate.clock import phase_done, run_starting
from ablate.config import check_overrides, conf_dir, import_user_modules, run_name
from ablate.contract import FINISHED, METRICS, SAMPLES, SUMMARY, Arm, Summary, read_summary
from ablate.errors import AblateError, ConfigError
from ablate.lightning_import import import_lightning
from ablate.schema import check_config
from ablate.stopping import stop_on_signals


def wandb_mode(mode: str) -> str:
    """``auto``: WANDB_MODE if set, online when an API key is configured, offline otherwise (never a prompt)."""
    if mode != "auto":
        return mode
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    host = (os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").split("://")[-1].rstrip("/")
    try:
        return "online" if netrc.netrc(os.environ.get("NETRC")).authenticators(host) else "offline"
    except (FileNotFoundError, netrc.NetrcParseError):
        return "offline"


class _DropTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Tip:" not in record.getMessage()


def _quiet_lightning() -> None:
    """One copy of each Lightning message (through Hydra's handlers when Hydra configured logging), no ads."""
    if logging.getLogger().handlers:
        for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
            log = logging.getLogger(name)
            for handler in list(log.handlers):
                log.removeHandler(handler)
            log.propagate = True
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_DropTips())
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")


# Settings added after runs were first recorded, left out of the identity while at the value that means "off",
# so that a finished run stays finished (and is skipped on relaunch) when a later version adds a setting.
NEUTRAL_SETTINGS = {
    ("model", "vocab_multiple"): None,
    ("optim", "optimizer"): {"name": "adamw"},
    ("optim", "schedule"): {"name": "cosine"},
}


def run_identity(cfg: DictConfig) -> str:
    """What makes a run the run it is (architecture, data, optimiser, trainer, seed), as a short hash."""
    keys = ("model", "data", "optim", "trainer", "seed")
    identity = {k: OmegaConf.to_container(cfg[k], resolve=True) if OmegaConf.is_config(cfg[k]) else cfg[k]
                for k in keys}  # only what it reads: a sweep's job config also holds Hydra's own node
    identity["trainer"] = {k: v for k, v in identity["trainer"].items() if k not in ("enable_progress_bar",)}
    for (group, key), off in NEUTRAL_SETTINGS.items():
        if key in identity[group] and identity[group][key] == off:
            del identity[group][key]
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _move_aside(output_dir: Path, name: str) -> None:
    """Keep an earlier, different run's results when a new run takes over its folder."""
    aside = output_dir / name
    aside.mkdir(exist_ok=True)
    for item in (SUMMARY, METRICS, SAMPLES, "checkpoints", "wandb"):
        if (output_dir / item).exists():
            (output_dir / item).rename(aside / item)
    print(f"{output_dir} held a different run; its results are kept in {aside}")


def _threads_per_parallel_job() -> int | None:
    """With runs side by side on one machine (joblib), split its cores between them: oversubscribed
    threads can slow every run fifty-fold."""
    if not HydraConfig.initialized():
        return None
    n_jobs = HydraConfig.get().launcher.get("n_jobs")
    if not n_jobs or n_jobs == 1:
        return None
    return max(1, (os.cpu_count() or 1) // (n_jobs if n_jobs > 0 else os.cpu_count() or 1))


def sweep_labels(cfg: DictConfig) -> dict[str, Any]:
    """Where a run sits in its sweep, as its record says it: the sweep, the arm (:class:`ablate.contract.Arm`, as
    the sweeper derived it), the baseline, the practical margin, the declared comparisons, and the values of
    the tuned keys (``{"optim.lr": 0.001}``); none of them change what the run computes."""
    return {
        "sweep": cfg.sweep.name,
        "arm": _arm(cfg).record() if cfg.sweep.arm else None,
        "baseline": cfg.sweep.baseline,
        "margin": cfg.sweep.get("margin"),
        "compare": dict(cfg.sweep.get("compare") or {}),
        "tune": {key: OmegaConf.select(cfg, key) for key in cfg.sweep.get("tune") or []},
    }


def _arm(cfg: DictConfig) -> Arm:
    sweep = OmegaConf.to_container(cfg.sweep, resolve=True)
    return Arm.from_record({**sweep, "name": sweep["arm"]})


def _version() -> str:
    """ablate's version, with the commit when it runs from a git checkout (results name their code)."""
    from ablate import __version__

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{__version__}+{commit}" if commit else __version__


def _command(cfg: DictConfig) -> str:
    if HydraConfig.initialized():
        return " ".join(["ablate-train", *HydraConfig.get().overrides.task])
    return " ".join(["ablate-train", *sys.argv[1:]])


def run(cfg: DictConfig, output_dir: str | Path, callbacks: list[Any] | None = None) -> dict[str, Any]:
    """Train one model as ``cfg`` says, writing everything under ``output_dir``; returns the run's summary.

    A finished run of the same config in ``output_dir`` is skipped; an unfinished one (interrupted,
    killed, failed) resumes from its last checkpoint. ``callbacks`` are added to the Trainer's.
    """
    output_dir = Path(output_dir)
    run_starting()
    import_lightning()  # before anything imports it: without the scipy.signal import it would bring
    _prepare(cfg, output_dir)
    skipped = skip_if_finished(cfg, output_dir)
    if skipped is not None:
        return skipped
    phase_done("lightning_and_checks")
    previous = _claim(output_dir, read_summary(output_dir), run_identity(cfg))
    built = _build(cfg, output_dir, previous)
    phase_done("data_and_model")
    loggers = _open_record(cfg, output_dir, built, previous)
    phase_done("wandb")
    _collect_garbage_again()
    return _train(cfg, output_dir, built, loggers, callbacks)


def _collect_garbage_again() -> None:
    """``ablate-train`` starts up with Python's cyclic garbage collector off (see ``main``): the imports and the
    start-up make little garbage, and each of the collector's full passes would walk every object they made.
    What they made lasts as long as the process, so it is frozen out of later passes, and the collector is on
    again for training (and for a sweep's later runs in this process)."""
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


class CollectGarbageInSweeps(Callback):
    """Hydra callback (``hydra.callbacks`` in ``conf/config.yaml``): the process that launches a sweep may never
    train a run itself (its jobs run in other processes, or are all finished already), so the collector that
    ``main`` turned off for the start-up is on again as the sweep starts."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _collect_garbage_again()


def _prepare(cfg: DictConfig, output_dir: Path) -> None:
    """Everything a run needs before it looks at its folder: the user's variants, quiet logs, a writable folder,
    the threads it may use, its seed."""
    import lightning as L
    import torch

    import_user_modules()
    check_config(cfg)
    _quiet_lightning()
    _check_writable(output_dir)
    threads = cfg.get("threads") or _threads_per_parallel_job()
    if threads:
        torch.set_num_threads(threads)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    if torch.cuda.is_available():
        torch.set_float32_matmul_precision("high")  # TF32 matmuls on Ampere and newer


def skip_if_finished(cfg: DictConfig, output_dir: Path) -> dict[str, Any] | None:
    """A finished run is not run again: if ``output_dir`` holds this run, finished, its record (relabelled when
    a sweep now includes it), marked ``skipped``; else None."""
    previous = read_summary(output_dir)
    if previous.get("run_id") != run_identity(cfg) or previous.get("status") not in FINISHED:
        return None
    print(f"{output_dir}: already {previous['status']}, skipping (delete its summary.json to redo it)")
    labels = sweep_labels(cfg)
    if {k: previous.get(k) for k in labels} != labels:
        previous.update(labels)  # the same run, now also part of this sweep: its labels follow
        atomic_write_json(output_dir / SUMMARY, previous)
    return {**previous, "skipped": True}


def _claim(output_dir: Path, previous: dict[str, Any], run_id: str) -> dict[str, Any]:
    """The folder's earlier record if it is this run's (to resume), else {} with the other run's files moved aside."""
    if previous and previous.get("run_id") != run_id:
        _move_aside(output_dir, f"replaced-{previous.get('run_id', 'unknown')}")
        return {}
    return previous


@dataclass
class _Built:
    """What a run trains: its data, its LightningModule, the summary it starts its record with, and the
    checkpoint it resumes from (None: from the start)."""

    datamodule: Any
    module: Any
    summary: Summary
    resume_from: Path | None


def _build(cfg: DictConfig, output_dir: Path, previous: dict[str, Any]) -> _Built:
    """Data, model and the run's summary; a run that fails here still leaves a record saying why."""
    from ablate.checkpoints import LAST, check_compatible, load_checkpoint
    from ablate.data import make_datamodule
    from ablate.lit import LitGPT
    from ablate.memory import check_step_fits

    try:
        datamodule = make_datamodule(OmegaConf.to_container(cfg.data, resolve=True), seed=cfg.seed)
        datamodule.setup()
        module = LitGPT(
            model=OmegaConf.to_container(cfg.model, resolve=True),
            optim=OmegaConf.to_container(cfg.optim, resolve=True),
            tokenizer=datamodule.tokenizer.state(),
            sample=OmegaConf.to_container(cfg.sample, resolve=True),
        )
        gpt = module.model
        max_len = gpt.transformer.wpe.max_len
        if max_len is not None and datamodule.block_size > max_len:
            raise ConfigError(
                f"data.block_size={datamodule.block_size} exceeds the learned positional table ({max_len} positions, "
                f"model.block_size); make them equal or pick model/positional=sinusoidal"
            )
        check_step_fits(gpt, cfg.trainer, datamodule.batch_size, datamodule.block_size)
        ckpt_path = output_dir / "checkpoints" / LAST
        resume_from = ckpt_path if previous and ckpt_path.is_file() else None
        if resume_from:
            check_compatible(load_checkpoint(resume_from), resume_from, module.hparams.model, module.hparams.tokenizer)
            print(f"{output_dir}: resuming its unfinished run from {resume_from}")

        choices = gpt.config.choices()
        point = [f"{key.split('.')[-1]}={value}" for key, value in sweep_labels(cfg)["tune"].items()]
        default_name = "-".join([cfg.sweep.arm, *point, f"s{cfg.seed}"]) if cfg.sweep.arm else \
            run_name(cfg.model, choices, cfg.seed)
        summary: Summary = {
            "run_id": run_identity(cfg),
            "name": cfg.logger.name or default_name,
            **sweep_labels(cfg),
            "preset": cfg.model.get("preset"),
            "choices": choices,
            "flags": gpt.config.flags(),
            "sizes": {k: cfg.model[k] for k in ("n_layer", "n_head", "n_embd", "block_size")},
            "vocab_size": gpt.config.vocab_size,
            "tokenizer": datamodule.kind,
            "data": str(datamodule.path),
            "n_params": gpt.num_params(),
            "seed": cfg.seed,
            "max_steps": cfg.trainer.max_steps,
            "command": _command(cfg),
            "version": _version(),
            "output_dir": str(output_dir),
            **datamodule.state(),
        }
    except BaseException as e:
        atomic_write_json(output_dir / SUMMARY, {
            "run_id": run_identity(cfg), "sweep": cfg.sweep.name, "arm": sweep_labels(cfg)["arm"], "seed": cfg.seed,
            "command": _command(cfg), "status": "failed", "error": f"{type(e).__name__}: {e}",
        })
        raise
    return _Built(datamodule, module, summary, resume_from)


def _open_record(cfg: DictConfig, output_dir: Path, built: _Built, previous: dict[str, Any]) -> list[Any]:
    """The run's loggers: its local record (first; continued when it resumes) and, unless disabled, wandb."""
    from ablate.records import RunRecord

    record = RunRecord(output_dir, built.summary, resume=built.resume_from is not None)
    mode = wandb_mode(cfg.logger.mode)
    if mode == "disabled":
        return [record]
    wandb_logger = _wandb_logger(cfg, mode, built.summary["name"], output_dir, built.summary, previous)
    record.summary["wandb_id"] = wandb_logger.version
    return [record, wandb_logger]


def _train(
    cfg: DictConfig, output_dir: Path, built: _Built, loggers: list[Any], callbacks: list[Any] | None
) -> dict[str, Any]:
    """Fit, then evaluate on the whole validation split; the record and the wandb run are closed with the run's
    status (completed, diverged, interrupted or failed) whatever happens. Returns the record's summary."""
    from hydra.utils import instantiate
    from lightning.pytorch.callbacks import ProgressBar

    from ablate.checkpoints import LAST, AtomicCheckpointIO, LastCheckpoint
    from ablate.lit import RichBar, TrainingThroughput
    from ablate.records import RunClock

    record, module, datamodule = loggers[0], built.module, built.datamodule
    checkpoint = LastCheckpoint(output_dir / "checkpoints" / LAST)
    bar = cfg.trainer.enable_progress_bar and not any(isinstance(c, ProgressBar) for c in callbacks or [])
    trainer = instantiate(
        cfg.trainer,
        logger=loggers,
        callbacks=[
            TrainingThroughput(),
            RunClock(),
            checkpoint,
            # ours unless the caller brings a progress bar (Lightning allows one)
            *([RichBar()] if bar else []),
            *(callbacks or []),
        ],
        plugins=[AtomicCheckpointIO()],
        enable_checkpointing=False,  # LastCheckpoint keeps checkpoints/last.ckpt
        default_root_dir=str(output_dir),
        # a compiled model's final evaluation runs under no_grad, as evaluations during training do, and reuses
        # their graph (inference mode would compile another); the numbers are the same either way
        inference_mode=not module.hparams.model.get("compile"),
    )
    status, error = "failed", None

    def forced(reason: str) -> None:  # a second SIGTERM or Ctrl-C: the record says so before the process ends
        record.close("interrupted", f"{reason} at step {trainer.global_step}; relaunch to resume from the last "
                     f"checkpoint", steps=trainer.global_step)

    try:
        with stop_on_signals(forced):
            trainer.fit(module, datamodule=datamodule, ckpt_path=built.resume_from, weights_only=True)
        if module.diverged:
            status, error = "diverged", module.diverged
        elif trainer.global_step < cfg.trainer.max_steps:
            status, error = "interrupted", f"stopped at step {trainer.global_step} of {cfg.trainer.max_steps}"
        else:
            with stop_on_signals(forced):
                trainer.validate(module, dataloaders=datamodule.full_val_dataloader(), verbose=False)
            status = "completed"
    except BaseException as e:
        if checkpoint.interrupted:
            status, error = "interrupted", f"{checkpoint.interrupted}; checkpoint saved, relaunch to resume"
        else:
            error = f"{type(e).__name__}: {e}"
        raise
    finally:
        record.close(status, error, steps=trainer.global_step)
        if len(loggers) > 1:
            import wandb

            if wandb.run is not None:
                wandb.run.summary.update({"status": status, "error": error})
            wandb.finish(exit_code=0 if status == "completed" else 1)
    if status != "completed":
        print(f"Run {status}: {error}; recorded in {output_dir / SUMMARY}")
    if len(loggers) > 1 and wandb_mode(cfg.logger.mode) == "offline":
        print(f"wandb: offline run saved; upload it with: wandb sync {output_dir / 'wandb'}/offline-run-*")
    return record.summary


def _wandb_logger(
    cfg: DictConfig, mode: str, name: str, output_dir: Path, summary: dict[str, Any], previous: dict[str, Any]
) -> Any:
    import torch
    import wandb
    from lightning.pytorch.loggers import WandbLogger

    logger = WandbLogger(
        project=cfg.logger.project, entity=cfg.logger.entity, group=cfg.logger.group, name=name,
        tags=[*cfg.logger.tags, *(f"{slot}={c}" for slot, c in summary["choices"].items())],
        save_dir=str(output_dir), mode=mode,
        id=previous.get("wandb_id"),  # a resumed run continues its wandb run
        # flat keys per slot, so the wandb UI can group and filter runs by component (and by flags.bias, ...)
        config={
            **summary["choices"], "flags": summary["flags"], "arm": cfg.sweep.arm, "preset": cfg.model.get("preset"),
            "n_params": summary["n_params"], "command": summary["command"],
            **OmegaConf.to_container(cfg, resolve=True),
        },
        settings=wandb.Settings(x_disable_stats=not torch.cuda.is_available(), silent=True),
    )
    # Lightning passes wandb.init(anonymous=None), which wandb 0.31 answers on every run with "The anonymous setting
    # has no effect and will be removed"; left out, wandb uses its own default, as it would for None.
    if logger._wandb_init.get("anonymous") is None:
        logger._wandb_init.pop("anonymous", None)
    logger.experiment  # noqa: B018  start the wandb run now (Lightning would at setup): its id goes in the record
    return logger


def _output_dirs(args: list[str]) -> list[Path]:
    """The folders that ``hydra.run.dir=``/``hydra.sweep.dir=`` overrides name, read as Hydra reads them:
    Lightning's DDP relaunch passes ``hydra.run.dir="<path>"``, quotes included."""
    parser, dirs = OverridesParser.create(), []
    for arg in args:
        if not arg.startswith(("hydra.run.dir=", "hydra.sweep.dir=")):
            continue
        try:
            value = parser.parse_overrides([arg])[0].value()
        except OverrideParseException:
            continue  # Hydra's own message names the syntax error
        if isinstance(value, str) and "${" not in value:
            dirs.append(Path(value))
    return dirs


def _check_writable(output_dir: Path, keep: bool = True) -> None:
    """Fail in one line if ``output_dir`` cannot be written; ``keep=False``: leave no folder this check created
    (the command line is checked before anything is launched, and may still be refused)."""
    created = [p for p in (output_dir, *output_dir.parents) if not p.exists()]
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        probe = output_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise ConfigError(
            f"output folder {output_dir} cannot be written ({e.strerror}); choose another with hydra.run.dir=..."
        ) from None
    if not keep:
        for folder in created:  # deepest first
            folder.rmdir()


def _resumed_config(run_dir: str) -> tuple[DictConfig, Path]:
    """The saved config of the run in ``run_dir`` (its .hydra/config.yaml), for ``resume=RUN_DIR``."""
    path = Path(run_dir).expanduser()
    saved = path / ".hydra" / "config.yaml"
    if not saved.is_file():
        raise ConfigError(f"resume={run_dir}: not a run folder (no .hydra/config.yaml); give an outputs/<date>/<time>")
    cfg = OmegaConf.load(saved)
    cfg.resume = None
    ignored = [o for o in HydraConfig.get().overrides.task if not o.startswith("resume=")]
    if ignored:
        print(f"resume continues the run as it was defined; ignoring {' '.join(ignored)}")
    return cfg, path


@hydra.main(config_path=str(conf_dir()), config_name="config", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> float | None:
    output_dir = Path(HydraConfig.get().runtime.output_dir)
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    start = time.time()
    try:
        if cfg.get("resume"):
            cfg, output_dir = _resumed_config(cfg.resume)
        summary = run(cfg, output_dir)
    except AblateError as e:
        if multirun:
            raise  # recorded as failed; the sweep goes on with its other jobs
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except SystemExit as e:
        # Lightning's SIGTERMException (a SystemExit), imported here: importing Lightning is the run's to time
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        if not isinstance(e, SIGTERMException):
            raise
        print(f"Interrupted by SIGTERM; checkpoint saved. Continue with: ablate-train resume={output_dir}")
        sys.exit(143)  # 128 + SIGTERM, what schedulers expect of a terminated job
    if summary["status"] != "completed":
        return float("nan")  # diverged or interrupted: a search sweeper counts it as a failed trial
    if summary.get("skipped"):
        return summary.get("val_loss_final")
    print(
        f"\nDone in {time.time() - start:.0f} s: val loss {summary.get('val_loss_final', float('nan')):.4f} "
        f"(whole validation split), best during training {summary.get('val_loss_best', float('nan')):.4f}.\n"
        f"Outputs in {output_dir}/: summary.json, metrics.csv, samples.txt, checkpoints/last.ckpt"
    )
    return summary.get("val_loss_final")


def main() -> None:
    """Console entry point: register user variants, check the overrides, then hand over to Hydra."""
    # Start-up (importing Lightning, composing, building) without the cyclic collector, until _collect_garbage_again;
    # and at exit, after every other exit handler (this one, registered first, runs last), no collection either:
    # the interpreter's own would walk every object the imports made to free memory the process is about to hand
    # back. Records and files are closed before then. Measured in the README's "Against nanoGPT".
    gc.disable()
    atexit.register(gc.freeze)
    try:
        import_user_modules()
        check_overrides(sys.argv[1:])
        for output_dir in _output_dirs(sys.argv[1:]):
            _check_writable(output_dir, keep=False)
    except AblateError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    try:
        _hydra_main()
    except ValueError as e:  # Hydra's checks of its own flags raise before any run starts
        if not str(e).startswith(("Only one of --run", "The --resolve flag")):
            raise
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()

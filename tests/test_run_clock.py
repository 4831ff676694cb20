"""Every run records (and prints once) its time to the first training step, counted from the process's start, and
the time it spent evaluating: ``records.RunClock``."""

import json
import subprocess
import sys
import time

import pytest
from conftest import TINY, cli
from lightning.pytorch.callbacks import Callback

from ablate import clock
from ablate.clock import PHASES
from ablate.contract import SUMMARY
from ablate.records import RunRecord


@pytest.mark.slow
def test_the_clock_starts_with_the_process_not_with_the_import():
    """A process that sleeps 1.5 s before importing ablate is 1.5 s old when it asks (not 0, as an import-time clock
    would say); the imports after the sleep make it a little older still."""
    code = ("import time; time.sleep(1.5)\n"
            "from ablate.clock import process_start\n"
            "print(time.time() - process_start())")
    age = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert 1.5 <= age < 1.5 + 60


@pytest.mark.slow
def test_a_run_records_and_prints_its_time_to_the_first_step_and_its_evaluations(tmp_path):
    start = time.time()
    result = cli("ablate-train", *TINY, "trainer.max_steps=6", "trainer.val_check_interval=3", "data.eval_batches=2",
                 "sample.max_new_tokens=4", "optim.warmup_steps=2", "data.val_fraction=0.01", "logger.mode=disabled",
                 f"hydra.run.dir={tmp_path}", cwd=tmp_path)
    elapsed = time.time() - start
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())

    # printed once, with the recorded value
    printed = [line for line in result.stdout.splitlines() if line.startswith("time to first training step:")]
    parts = summary["time_to_first_step_parts_s"]
    assert list(parts) == list(PHASES)  # every phase, in order (wandb disabled: its phase is near zero)
    split = ", ".join(f"{name.replace('_', ' ')} {seconds:.2f}" for name, seconds in parts.items())
    assert printed == [f"time to first training step: {summary['time_to_first_step_s']:.2f} s after the process's "
                       f"start ({split})"]
    assert 0 < summary["time_to_first_step_s"] < elapsed  # the process's start is when process_start says (above)
    assert sum(parts.values()) == pytest.approx(summary["time_to_first_step_s"], abs=0.01)
    assert all(seconds >= 0 for seconds in parts.values()) and parts["launch_and_config"] > 0.5  # at least Python and torch
    # two evaluations during training (steps 3 and 6), one over the whole validation split at the end
    assert summary["eval_time_s"] > 0 and summary["final_eval_time_s"] > 0
    assert summary["eval_time_s"] + summary["final_eval_time_s"] < summary["wall_time_s"]


def test_a_resumed_run_keeps_counting_its_evaluation_time(tmp_path):
    (tmp_path / SUMMARY).write_text(json.dumps({"wall_time_s": 10.0, "eval_time_s": 2.5, "time_to_first_step_s": 4.0}))
    record = RunRecord(tmp_path, {"seed": 1}, resume=True)
    assert record.summary["eval_time_s"] == 2.5  # RunClock adds this attempt's evaluations to it
    assert "time_to_first_step_s" not in record.summary  # each attempt states its own


def test_start_up_parts_add_up_from_the_marks_since_the_runs_start(monkeypatch):
    """Each phase is the time from the mark before it; marks before ``since`` (a run before, in a sweep's
    process) are not this run's, a phase marked twice (a retried step) adds up, and the marks are then forgotten."""
    monkeypatch.setattr(clock, "_phases", [("wandb", 5.0), ("launch_and_config", 12.0), ("lightning_and_checks", 14.5),
                                           ("data_and_model", 15.0), ("data_and_model", 15.25)])
    parts = clock.startup_parts(since=10.0, now=16.0)
    assert parts == {"launch_and_config": 2.0, "lightning_and_checks": 2.5, "data_and_model": 0.75, "first_step": 0.75}
    assert clock._phases == [] and clock.startup_parts(since=16.0, now=17.0) == {"first_step": 1.0}
    with pytest.raises(ValueError, match="unknown start-up phase 'imports'; the phases: launch_and_config, "):
        clock.phase_done("imports")


@pytest.mark.parametrize("collector_on", [False, True])
def test_a_run_started_without_the_garbage_collector_trains_with_it(compose_cfg, tmp_path, collector_on):
    """``ablate-train`` starts up with the cyclic collector off; the run turns it back on for training, with what the
    start-up made frozen out of its passes. A run started with it on (a test, a sweep's later run) changes nothing."""
    import gc

    from ablate.train import run

    cfg = compose_cfg(*TINY, "trainer.max_steps=2", "trainer.val_check_interval=2", "data.eval_batches=1",
                      "sample.max_new_tokens=2", "data.val_fraction=0.01", "logger.mode=disabled",
                      "trainer.enable_progress_bar=false")
    seen = []

    class Watch(Callback):
        def on_train_batch_start(self, *_):
            seen.append((gc.isenabled(), gc.get_freeze_count()))

    (gc.enable if collector_on else gc.disable)()
    try:
        assert run(cfg, tmp_path, callbacks=[Watch()])["status"] == "completed"
    finally:
        frozen = gc.get_freeze_count()
        gc.unfreeze()
        gc.enable()
    assert {on for on, _ in seen} == {True}  # on for every training step
    assert (frozen > 0) != collector_on  # the start-up's objects frozen only when it ran without the collector


def test_a_sweeps_launching_process_turns_the_garbage_collector_back_on(compose_cfg):
    """Its jobs may run in other processes (``hydra/launcher=parallel``) or all be finished: the callback the config
    names for Hydra turns the collector on as the sweep starts."""
    import gc

    from hydra.utils import instantiate

    cfg = compose_cfg("sweeps=recipe", "hydra/launcher=parallel", hydra=True)
    callbacks = [instantiate(c) for c in cfg.hydra.callbacks.values()]
    gc.disable()
    try:
        for callback in callbacks:
            callback.on_multirun_start(cfg)
        assert gc.isenabled()
    finally:
        gc.unfreeze()
        gc.enable()

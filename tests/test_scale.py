"""Scale-out on a real engine: DDP across processes, many runs in one process, the cluster launcher."""

import ctypes
import gc
import json
import os
from pathlib import Path

import pytest
from conftest import cli

from ablate.train import run

pytestmark = pytest.mark.slow

SHORT = [
    "trainer.max_steps=20", "trainer.val_check_interval=10", "trainer.enable_progress_bar=false",
    "data.eval_batches=2", "sample.max_new_tokens=4", "threads=1",
    "data.val_fraction=0.01",  # a short final evaluation over the whole (1%) validation split
]


def _children(pid: int) -> list[str]:
    """Command lines of the live descendants of ``pid`` (read from /proc, no extra dependency)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                out += [cmd, *_children(int(entry.name))]
        except (OSError, ValueError, IndexError):
            continue
    return out


def test_ddp_on_two_cpu_processes_matches_one_process(tmp_path):
    """gloo DDP with the same global batch gives the same validation losses as one process, and leaves
    no process behind. Lightning re-launches `ablate-train` for rank 1 inside the same Hydra run folder."""
    results = {}
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    for name, extra in (("single", []), ("ddp", ["trainer=ddp", "trainer.devices=2", "trainer.accelerator=cpu"])):
        out = tmp_path / name
        proc = cli("ablate-train", *SHORT, *extra, "logger.mode=disabled", f"hydra.run.dir={out}", cwd=cwd, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        results[name] = json.loads((out / "summary.json").read_text())
    single, ddp = results["single"], results["ddp"]
    assert ddp["status"] == "completed" and ddp["steps"] == 20
    for key in ("val_loss_best", "val_loss_last", "val_loss_final"):
        assert ddp[key] == pytest.approx(single[key], rel=1e-5, abs=1e-5), key
    assert (tmp_path / "ddp" / "train_ddp_process_1.log").exists()  # rank 1 really ran, in the same folder
    assert not list(cwd.iterdir())  # rank 1's hydra.run.dir="<path>" (quoted) made no folder where it was launched
    assert not [c for c in _children(os.getpid()) if "ablate-train" in c]


def test_ten_runs_in_one_process_leave_nothing_behind(compose_cfg, tmp_path):
    """A sweep's worth of runs in one process: no wandb processes pile up, no file descriptors or memory leak."""

    def fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    def rss_mb() -> float:
        gc.collect()
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # count memory held by objects, not free memory the allocator keeps
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")

    cfg = ["trainer.max_steps=6", "trainer.val_check_interval=3", *SHORT[2:], "logger.mode=offline"]
    run(compose_cfg(*cfg, "seed=0"), tmp_path / "warmup")  # imports, caches, wandb's service
    gc.collect()
    fds0, rss0 = fds(), rss_mb()
    wandb0 = len([c for c in _children(os.getpid()) if "wandb" in c])
    for seed in range(1, 11):
        summary = run(compose_cfg(*cfg, f"seed={seed}"), tmp_path / f"run{seed}")
        assert summary["status"] == "completed"
    gc.collect()
    wandb_procs = [c for c in _children(os.getpid()) if "wandb" in c]
    assert len(wandb_procs) <= max(wandb0, 1), wandb_procs  # at most wandb's one shared service
    assert fds() - fds0 <= 5, f"{fds() - fds0} file descriptors leaked over 10 runs"
    assert rss_mb() - rss0 < 150, f"memory grew {rss_mb() - rss0:.0f} MB over 10 runs"
    assert len(list(tmp_path.glob("run*/wandb/offline-run-*"))) == 10  # one wandb run each, none shared

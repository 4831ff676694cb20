"""Shared fixtures: compose the real ``conf/`` with Hydra's compose API, shrunk to a CPU-sized model."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from ablate.config import conf_dir
from ablate.model import GPT, GPTConfig

BIN = Path(sys.executable).parent  # the venv's commands
ROOT = Path(__file__).parents[1]  # the checkout

# A model small enough that hundreds of them build and step in seconds.
TINY = ["model.n_layer=2", "model.n_head=2", "model.n_embd=16", "model.block_size=16"]


@pytest.fixture(autouse=True, scope="session")
def _isolated_caches(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Token caches and wandb's own files go to a temporary folder, never the user's home."""
    root = tmp_path_factory.mktemp("caches")
    os.environ["ABLATE_CACHE_DIR"] = str(root / "ablate")
    os.environ["XDG_CACHE_HOME"] = str(root / "xdg")
    os.environ["WANDB_CONFIG_DIR"] = str(root / "wandb-config")
    os.environ.pop("WANDB_MODE", None)
    os.environ.pop("WANDB_API_KEY", None)


def compose_config(*overrides: str, hydra: bool = False) -> DictConfig:
    """The real root config with these command-line overrides, as ``ablate-train`` would see it
    (``hydra=True``: with the ``hydra`` node too, for sweeps and launchers)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=hydra)


def cli(program: str, *args: str, env: dict | None = None, cwd: Path | None = None,
        timeout: float = 900) -> subprocess.CompletedProcess:
    """One of ablate's commands (``ablate-train``, ``ablate-report``, ...) run as a user would, one thread."""
    return subprocess.run(
        [str(BIN / program), *args], capture_output=True, text=True, timeout=timeout, cwd=cwd,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
    )


def start_cli(program: str, *args: str, env: dict | None = None, **kw: Any) -> subprocess.Popen:
    """The same, started in the background (for signals sent while it runs)."""
    return subprocess.Popen(
        [str(BIN / program), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}, **kw,
    )


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """The one ``error:`` line a refused command prints (exit 2, no traceback)."""
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def wandb_records(run_dir: Path) -> list[dict]:
    """Every record of the offline wandb run in ``run_dir``, read back with wandb's own reader."""
    (offline,) = (run_dir / "wandb").glob("offline-run-*")
    out = subprocess.run(
        [sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(offline)],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def wandb_run(run_dir: Path) -> tuple[dict, dict, list[dict], str]:
    """(config, summary, history rows, name) of that run, as wandb's public API would give them."""
    records = wandb_records(run_dir)
    run = next(r["run"] for r in records if r["type"] == "run")
    config, summary = dict(run["config"]["update"]), {}
    for record in records:
        if record["type"] == "config":
            config.update(record["config"]["update"])
        elif record["type"] == "summary":
            summary.update(record["summary"]["update"])
    history = [r["history"]["item"] for r in records if r["type"] == "history"]
    return config, summary, history, run["display_name"]


def build_model(*overrides: str, vocab_size: int = 11, tiny: bool = True) -> GPT:
    """A model built from the composed ``model`` config (tiny unless told otherwise)."""
    cfg = compose_config(*(TINY if tiny else []), *overrides)
    return GPT(GPTConfig.from_dict(OmegaConf.to_container(cfg.model, resolve=True), vocab_size=vocab_size))


@pytest.fixture
def compose_cfg() -> Callable[..., DictConfig]:
    return compose_config


@pytest.fixture
def make_model() -> Callable[..., GPT]:
    return build_model


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _alone_if_marked(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The suite runs on every core (pytest-xdist, one test per worker); a test marked ``alone`` measures the
    machine, so it waits until no other worker is in a test and keeps them out until it ends: every test holds
    a shared lock on one file, an ``alone`` test an exclusive one."""
    root = tmp_path_factory.getbasetemp()
    root = root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root  # the workers' common folder
    with open(root / "alone.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX if request.node.get_closest_marker("alone") else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# One thread: tiny models gain nothing from two, and two threads on a shared 2-core machine can
# slow a step fifty-fold (see the README's notes on timing).
torch.set_num_threads(1)

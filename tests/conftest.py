"""Shared fixtures: compose the real ``conf/`` with Hydra's compose API, shrunk to a CPU-sized model."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from ablate.config import conf_dir
from ablate.model import GPT, GPTConfig

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


def compose_config(*overrides: str) -> DictConfig:
    """The real root config with these command-line overrides, as ``ablate-train`` would see it."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


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


# One thread: tiny models gain nothing from two, and two threads on a shared 2-core machine can
# slow a step fifty-fold (see the README's notes on timing).
torch.set_num_threads(1)

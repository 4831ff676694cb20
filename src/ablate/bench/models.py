"""The benchmark's configs (its sizes are in ``ablate.bench.sizes``), the model and optimizer it builds for
each, and the losses it times."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf
from torch import nn

from ablate.config import conf_dir
from ablate.lit import LitGPT
from ablate.recipe import build_optimizer

NOTES = {
    ("activation", "gelu"): "erf instead of tanh (elementwise)",
    ("activation", "relu"): "cheaper elementwise",
    ("layernorm", "custom"): "fused layer-norm kernels and a per-row factor (2 more passes)",
    ("norm", "post"): "no final layer norm",
    ("positional", "none"): "no position add",
    ("positional", "sinusoidal"): "fixed table, no gradient",
    ("positional", "rotary"): "rotates q and k in every layer (elementwise)",
    ("positional", "alibi"): "score bias as a float mask: no flash kernel",
    ("norm", "parallel"): "one norm per block instead of two",
    ("qkv", "per_head_shared"): "hs→hs projections, shared by heads",
    ("mlp", "swiglu"): "gate × up and SiLU (elementwise)",
    ("mlp", "geglu"): "gate × up and erf GELU (elementwise)",
    ("mlp", "reglu"): "gate × up and ReLU (elementwise)",
    ("qk_norm", "rms"): "two RMSNorms per layer, on q and k (elementwise)",
}


def compose_config(*overrides: str) -> DictConfig:
    """The real root config with these overrides, as ``ablate-train`` composes it."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def build(cfg: DictConfig, tokenizer: dict[str, Any], device: torch.device) -> LitGPT:
    """The LightningModule ``ablate-train`` would build (seeded alike), its model on ``device``."""
    L.seed_everything(cfg.seed, verbose=False)
    module = LitGPT(**{k: OmegaConf.to_container(cfg[k], resolve=True) for k in ("model", "optim", "sample")},
                    tokenizer=tokenizer)
    module.model.to(device)
    return module


def make_optimizer(module: LitGPT) -> torch.optim.Optimizer:
    """The optimizer ``module.configure_optimizers`` makes (Lightning allows a bare one or a dict)."""
    opt = module.configure_optimizers()
    return opt["optimizer"] if isinstance(opt, dict) else opt


def optimizer_like(module: LitGPT, model: nn.Module) -> torch.optim.Optimizer:
    """The optimizer ``module.configure_optimizers`` makes (the same recipe builder and settings), over
    ``model``'s parameters."""
    return build_optimizer(model, module.hparams.optim, next(model.parameters()).device.type)


def ours_loss(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    return model(batch[:, :-1], batch[:, 1:])[1]


def hf_loss(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """The same loss as ours (cross-entropy on float logits over all T targets), on HF's logits."""
    logits = model(input_ids=batch[:, :-1], use_cache=False).logits
    return F.cross_entropy(logits.view(-1, logits.size(-1)).float(), batch[:, 1:].reshape(-1))

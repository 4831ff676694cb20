"""The benchmark's sizes and configs, the model and optimizer it builds for each, and the losses it times."""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True)
class Size:
    overrides: tuple[str, ...]  # on top of the real composed config (model=gpt2, tiny Shakespeare)
    run_steps: int  # steps of each whole training run in the Lightning-overhead section
    repeats: int  # plain/Lightning run pairs per mode in that section (the median is reported)


SIZES = {
    "quick": Size(("model.n_layer=2", "model.n_head=2", "model.n_embd=32", "model.block_size=64",
                   "data.batch_size=8", "data.eval_batches=2", "sample.max_new_tokens=8"), 3, 1),
    # nanoGPT's CPU baby GPT, the default config
    # a whole run takes ~40 s here and its time drifts by a few percent: 4 pairs keep the median steady
    "cpu-small": Size(("model/size=tiny", "data.batch_size=12"), 500, 4),
    "cpu-large": Size(("model.n_layer=6", "model.n_head=6", "model.n_embd=384", "model.block_size=256",
                       "data.batch_size=8"), 100, 2),
    # GPT-2 small (124M) with GPT-2's BPE; batch 16 × 1024 fits an 80 GB GPU with room to spare
    "gpt2-small": Size(("model/size=small", "data.tokenizer=gpt2", "data.batch_size=16"), 500, 2),
}


DEVICE_OVERRIDES = {
    "cpu": ("trainer.accelerator=cpu",),
    # eager: the compile section times torch.compile on its own (model.compile resolves to true on GPUs)
    "cuda": ("trainer.accelerator=gpu", "trainer.precision=bf16-mixed", "optim.fused=true", "model.compile=false"),
}


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

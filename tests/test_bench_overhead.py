"""``ablate.bench.overhead``: the plain PyTorch loop trains with the training recipe's optimizer and schedule."""

import pytest
import torch
from conftest import TINY
from omegaconf import OmegaConf

from ablate.bench.models import build, compose_config
from ablate.bench.overhead import plain_optimizer_and_schedule
from ablate.data import make_datamodule


def test_the_plain_loop_uses_the_recipes_optimizer_and_schedule():
    cfg = compose_config(*TINY)
    data = make_datamodule(OmegaConf.to_container(cfg.data, resolve=True), seed=cfg.seed)
    data.setup()
    module = build(cfg, data.tokenizer.state(), torch.device("cpu"))
    optimizer, lr_at_step = plain_optimizer_and_schedule(module)

    # AdamW over every parameter once: weight decay on matrices and embeddings, never on biases or norm gains
    assert isinstance(optimizer, torch.optim.AdamW)
    grouped = [(p, g["weight_decay"]) for g in optimizer.param_groups for p in g["params"]]
    assert sorted(id(p) for p, _ in grouped) == sorted(id(p) for p in module.model.parameters())
    assert all((decay > 0) == (p.dim() >= 2) for p, decay in grouped)
    assert {decay for _, decay in grouped} == {0.0, cfg.optim.weight_decay}

    # the default schedule: linear warm-up to optim.lr over optim.warmup_steps, cosine down to optim.min_lr
    lrs = [lr_at_step(step) for step in range(cfg.trainer.max_steps + 1)]
    assert 0 < lrs[0] < lrs[cfg.optim.warmup_steps // 2] < cfg.optim.lr
    assert max(lrs) == pytest.approx(cfg.optim.lr)
    assert lrs[-1] == pytest.approx(cfg.optim.min_lr)
    assert all(a >= b for a, b in zip(lrs[cfg.optim.warmup_steps:], lrs[cfg.optim.warmup_steps + 1:]))

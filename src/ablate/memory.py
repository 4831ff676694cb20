"""Will one training step fit? An estimate of the memory a step needs, against what the device has free, so
that an impossible size (``model.block_size=100000``) fails in one line before the first step instead of
growing for minutes and swapping the machine.

The estimate: weights, gradients and optimizer state (AdamW's two moments: 16 bytes a parameter in fp32),
plus activations kept for the backward pass, counted from the model itself (every module's output on a short
sequence, per token, times the batch's tokens), plus the logits' gradient and, where attention builds its
T x T scores (ALiBi's float mask), those. Kernels' scratch memory and the allocator's slack are left out:
it is an estimate of what a step cannot do without, and only a step that cannot fit is refused.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ablate.errors import ConfigError

GB = 1024**3


def _bytes_per_value(precision: Any) -> tuple[int, int]:
    """(weights, activations) bytes per value under a Lightning precision."""
    p = str(precision)
    weights = 8 if p.startswith("64") else 2 if p in ("bf16-true", "16-true", "bf16", "16") else 4
    activations = 2 if "16" in p or "transformer-engine" in p else weights
    return weights, activations


def activations_per_token(model: nn.Module, length: int = 8) -> int:
    """Values the forward pass keeps per token: the outputs of every module without children, measured on one
    sequence of ``length`` tokens (what autograd saves is these outputs, or their inputs, give or take)."""
    count = 0

    def hook(module: nn.Module, args: Any, out: Any) -> None:
        nonlocal count
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                count += t.numel()

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    length = min(length, model.config.block_size)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()  # a probe, not a step: no dropout, nothing a training-mode module would count as a step
    try:
        # eager (no compile for a probe), and without touching the random state training draws from
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            model.forward(torch.zeros(1, length, dtype=torch.long, device=device))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return -(-count // length)


def step_bytes(model: nn.Module, batch_size: int, block_size: int, precision: Any,
               optimizer_values: int = 2) -> dict[str, int]:
    """The memory one training step needs, by part, in bytes."""
    cfg = model.config
    n = sum(p.numel() for p in model.parameters())
    w, a = _bytes_per_value(precision)
    tokens = batch_size * block_size
    parts = {
        "weights, gradients and optimizer state": n * w * (2 + optimizer_values),
        "activations": tokens * activations_per_token(model) * a,
        "logits' gradient": tokens * cfg.padded_vocab_size * 4,
    }
    if cfg.positional.get("name") == "alibi":  # a float T x T mask per head, and the scores it rules kernels out to
        parts["attention scores"] = 2 * batch_size * cfg.n_head * block_size**2 * a * cfg.n_layer
    return parts


def available_bytes(device: str) -> tuple[int, str]:
    """Free memory on ``device`` (cuda: the CUDA driver's free memory; cpu: MemAvailable from /proc/meminfo, or
    the cgroup's limit less its use where that is lower) and where the number comes from."""
    if device == "cuda":
        free, _ = torch.cuda.mem_get_info()
        return free, f"free on {torch.cuda.get_device_name()}"
    meminfo = Path("/proc/meminfo")
    available, where = None, "MemAvailable in /proc/meminfo"
    if meminfo.is_file():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    limit, used = Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory.current")
    try:
        free = int(limit.read_text()) - int(used.read_text())
        if available is None or free < available:
            available, where = free, "the cgroup's memory.max less memory.current"
    except (OSError, ValueError):  # no cgroup v2 limit ("max"), or none readable
        pass
    if available is None:
        available = (os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")) if hasattr(os, "sysconf") else 0
        where = "free physical pages"
    return available, where


def check_step_fits(model: nn.Module, trainer: Any, batch_size: int, block_size: int,
                    optimizer_values: int = 2) -> dict[str, int] | None:
    """Refuse, in one line, a run whose training step cannot fit in the memory its device has free. Checked for
    one device without a strategy (DDP and FSDP split the batch or the weights; they are not estimated here).
    Returns the estimate by part, or None where it is not checked."""
    if trainer.get("strategy") not in (None, "auto") or trainer.get("devices", 1) not in (1, "auto"):
        return None
    accelerator = str(trainer.get("accelerator", "auto"))
    if accelerator not in ("auto", "cpu", "gpu", "cuda"):
        return None
    device = "cuda" if accelerator != "cpu" and torch.cuda.is_available() else "cpu"
    parts = step_bytes(model, batch_size, block_size, trainer.get("precision", "32-true"), optimizer_values)
    need = sum(parts.values())
    available, where = available_bytes(device)
    if need > available:
        detail = ", ".join(f"{name} {value / GB:.2f} GB" for name, value in parts.items())
        raise ConfigError(
            f"one training step needs about {need / GB:.1f} GB ({detail}) but {available / GB:.1f} GB is available "
            f"({where}); lower data.batch_size={batch_size} or model.block_size={block_size}, or pick a smaller model"
        )
    return parts

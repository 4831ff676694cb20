"""The training recipe as slots: the optimizer (``optim/optimizer``) and the learning-rate schedule
(``optim/schedule``), registered like the model's variants and chosen the same way::

    ablate-train optim/optimizer=muon optim/schedule=wsd

Settings every recipe shares stay flat in ``optim`` (``lr``, ``min_lr``, ``warmup_steps``, ``decay_steps``,
``weight_decay``, ``betas``, ``eps``, ``fused``); a variant's own settings are its parameters
(``optim.schedule.decay_fraction=0.1``). The schedule is a function of the global step alone, so a run resumed
from any checkpoint continues it exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from ablate.registry import Slot

optimizer = Slot("optimizer", "what turns gradients into updates", parent="optim")
schedule = Slot("schedule", "the learning rate as a multiple of optim.lr at each step", parent="optim")


def _kernels(cfg: Mapping[str, Any], device_type: str) -> dict[str, bool]:
    """How AdamW runs its update. ``optim.fused`` null: one fused kernel on GPUs; elsewhere PyTorch's multi-tensor
    (foreach) loop, which computes the same numbers as its per-tensor loop bit for bit (a test holds it to that)
    and is faster on CPUs, where PyTorch would pick the per-tensor loop. ``true`` on a CPU: the fused kernel, faster
    still, but its numbers differ from the committed CPU results' in the last bits."""
    fused = cfg["fused"] if cfg.get("fused") is not None else device_type == "cuda"
    return {"fused": True} if fused else {"foreach": True}


def decay_groups(params: Iterable[nn.Parameter], weight_decay: float) -> list[dict[str, Any]]:
    """Decay matrices and embeddings (every tensor of rank ≥ 2); never biases or norm gains."""
    params = [p for p in params if p.requires_grad]
    return [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]


@optimizer.register("adamw")
def adamw(model: nn.Module, cfg: Mapping[str, Any], device_type: str) -> torch.optim.Optimizer:
    """AdamW (decoupled weight decay on matrices and embeddings): GPT-2's and nanoGPT's optimizer"""
    return torch.optim.AdamW(
        decay_groups(model.parameters(), cfg["weight_decay"]),
        lr=cfg["lr"], betas=tuple(cfg["betas"]), eps=cfg["eps"], **_kernels(cfg, device_type),
    )


def muon_matrices(model: nn.Module) -> list[nn.Parameter]:
    """The hidden 2-D weights: every matrix inside the transformer blocks (attention's q/k/v and output
    projections, the MLP's). Muon orthogonalizes an update as a linear map from one hidden space to another;
    the token and position embeddings are lookup tables and the output layer maps to the vocabulary, so those
    (as in modded-nanogpt and Moonlight) and every vector (biases, norm gains) stay with AdamW."""
    return [p for p in model.transformer.h.parameters() if p.requires_grad and p.dim() == 2]


def _closure_loss(closure: Any) -> Any:
    """What an optimizer's ``step(closure)`` returns: the closure's loss, computed with gradients on (as PyTorch's
    optimizers do), or None without one."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


class Chained(torch.optim.Optimizer):
    """Several optimizers over disjoint parameters as one: what Lightning's automatic optimization steps.

    ``param_groups`` are the members' current group dicts (``load_state_dict`` replaces them), so a schedule
    that sets ``group["lr"]`` reaches all, before and after a resume; the state dict is the members' state
    dicts, so a checkpoint resumes each exactly."""

    def __init__(self, *optimizers: torch.optim.Optimizer) -> None:
        super().__init__([p for o in optimizers for g in o.param_groups for p in g["params"]], {})
        self.optimizers = optimizers
        self.defaults = {"members": [type(o).__name__ for o in optimizers]}

    # Optimizer.__init__ assigns state and param_groups; the members keep their own, read through these
    @property
    def param_groups(self) -> list[dict[str, Any]]:  # type: ignore[override]
        return [g for o in getattr(self, "optimizers", ()) for g in o.param_groups]

    @param_groups.setter
    def param_groups(self, value: Any) -> None:
        pass

    @property
    def state(self) -> dict[Any, Any]:  # type: ignore[override]
        return {p: s for o in getattr(self, "optimizers", ()) for p, s in o.state.items()}

    @state.setter
    def state(self, value: Any) -> None:
        pass

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = _closure_loss(closure)
        for o in self.optimizers:
            o.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        for o in self.optimizers:
            o.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return {"members": [o.state_dict() for o in self.optimizers]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for o, s in zip(self.optimizers, state_dict["members"], strict=True):
            o.load_state_dict(s)


NS_DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32}


def orthogonalize(
    update: torch.Tensor, coefficients: tuple[float, float, float], steps: int, eps: float, dtype: torch.dtype
) -> torch.Tensor:
    """PyTorch's Newton-Schulz iteration for Muon (``torch/optim/_muon.py``, a quintic iteration towards the
    nearest semi-orthogonal matrix), computed in ``dtype``; in bfloat16 it is PyTorch's, bit for bit."""
    a, b, c = coefficients
    tall = update.size(0) > update.size(1)
    x = update.to(dtype).T if tall else update.to(dtype)  # (rows <= cols): the Gram matrix is the small side's
    x = x / x.norm().clamp(min=eps)  # spectral norm at most 1
    for _ in range(steps):
        gram = x @ x.T
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.T if tall else x


class Muon(torch.optim.Muon):
    """``torch.optim.Muon`` with its Newton-Schulz iteration in ``ns_dtype``; everything else (the parameter
    groups, momentum, the learning-rate adjustment, decoupled weight decay, the state dict) is PyTorch's.

    PyTorch runs the iteration in bfloat16, which GPUs (and CPUs with AVX-512 BF16) multiply fast. A CPU
    without bfloat16 units emulates it: on a 2-core AVX2 EPYC (one thread, side by side) one bfloat16
    384x128 @ 128x384 product took 10.3 ms against 1.2 ms in float32, and the optimizer step at the CPU default
    size 1,084 ms against 56 ms (AdamW's: 7 ms). The step below is ``torch.optim.Muon.step`` with the
    iteration's dtype as a setting; with ``torch.bfloat16`` it gives PyTorch's updates bit for bit
    (``tests/test_recipe.py``)."""

    def __init__(self, params: Any, *, ns_dtype: torch.dtype, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self.ns_dtype = ns_dtype

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        from torch.optim._muon import _adjust_lr

        loss = _closure_loss(closure)
        for group in self.param_groups:
            lr, momentum = group["lr"], group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p.grad, memory_format=torch.preserve_format)
                buf = state["momentum_buffer"]
                buf.lerp_(p.grad, 1 - momentum)
                update = p.grad.lerp(buf, momentum) if group["nesterov"] else buf
                update = orthogonalize(update, group["ns_coefficients"], group["ns_steps"], group["eps"],
                                       self.ns_dtype)
                p.mul_(1 - lr * group["weight_decay"])
                p.add_(update, alpha=-_adjust_lr(lr, group["adjust_lr_fn"], p.shape))
        return loss


@optimizer.register("muon", momentum=0.95, nesterov=True, ns_steps=5, adjust_lr_fn="match_rms_adamw", ns_dtype=None)
def muon(
    model: nn.Module, cfg: Mapping[str, Any], device_type: str, *,
    momentum: float, nesterov: bool, ns_steps: int, adjust_lr_fn: str, ns_dtype: str | None,
) -> torch.optim.Optimizer:
    """PyTorch's Muon on the blocks' matrices, AdamW on embeddings, output layer and vectors"""
    matrices = muon_matrices(model)
    chosen = {id(p) for p in matrices}
    rest = [p for p in model.parameters() if id(p) not in chosen]
    # adjust_lr_fn="match_rms_adamw" (Moonlight) scales each update to AdamW's RMS, so Muon shares optim.lr,
    # optim.weight_decay and the schedule with the AdamW half; "original" is Keller Jordan's scaling
    # (which wants a Muon learning rate of its own, about 0.02, as in modded-nanogpt)
    # ns_dtype null: PyTorch's bfloat16 on GPUs, float32 elsewhere (see Muon)
    dtype = NS_DTYPES[ns_dtype] if ns_dtype else torch.bfloat16 if device_type == "cuda" else torch.float32
    return Chained(
        Muon(
            matrices, lr=cfg["lr"], weight_decay=cfg["weight_decay"], momentum=momentum, nesterov=nesterov,
            ns_steps=ns_steps, adjust_lr_fn=adjust_lr_fn, ns_dtype=dtype,
        ),
        torch.optim.AdamW(
            decay_groups(rest, cfg["weight_decay"]),
            lr=cfg["lr"], betas=tuple(cfg["betas"]), eps=cfg["eps"], **_kernels(cfg, device_type),
        ),
    )


def build_optimizer(model: nn.Module, cfg: Mapping[str, Any], device_type: str = "cpu") -> torch.optim.Optimizer:
    """The optimizer ``cfg["optimizer"]`` names, over ``model``'s parameters, with ``cfg``'s shared settings."""
    return optimizer.build(cfg.get("optimizer", "adamw"), model, cfg, device_type)


def _warmup(step: int, warmup_steps: int) -> float:
    return (step + 1) / (warmup_steps + 1)


@schedule.register("cosine")
def cosine(step: int, lr: float, min_lr: float, warmup_steps: int, decay_steps: int) -> float:
    """linear warm-up, then cosine decay to min_lr at decay_steps (nanoGPT's)"""
    if step < warmup_steps:
        return _warmup(step, warmup_steps)
    if step >= decay_steps:
        return min_lr / lr
    progress = (step - warmup_steps) / max(1, decay_steps - warmup_steps)
    return (min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (lr - min_lr)) / lr


@schedule.register("wsd", decay_fraction=0.2)
def wsd(step: int, lr: float, min_lr: float, warmup_steps: int, decay_steps: int, *, decay_fraction: float) -> float:
    """warm-up, stable at lr, then linear decay to min_lr over the last decay_fraction of decay_steps"""
    # Hägele et al. 2024 ("Scaling Laws and Compute-Optimal Training Beyond Fixed Training Durations"), MiniCPM
    if step < warmup_steps:
        return _warmup(step, warmup_steps)
    decay_start = max(warmup_steps, round(decay_steps * (1.0 - decay_fraction)))
    if step < decay_start:
        return 1.0
    if step >= decay_steps:
        return min_lr / lr
    progress = (step - decay_start) / max(1, decay_steps - decay_start)
    return (lr - progress * (lr - min_lr)) / lr


@schedule.register("constant")
def constant(step: int, lr: float, min_lr: float, warmup_steps: int, decay_steps: int) -> float:
    """linear warm-up, then lr to the end (min_lr and decay_steps unused)"""
    return _warmup(step, warmup_steps) if step < warmup_steps else 1.0


@schedule.register("linear")
def linear(step: int, lr: float, min_lr: float, warmup_steps: int, decay_steps: int) -> float:
    """linear warm-up, then linear decay to min_lr at decay_steps"""
    return wsd(step, lr, min_lr, warmup_steps, decay_steps, decay_fraction=1.0)  # wsd decaying from the warm-up's end


def lr_factor(step: int, cfg: Mapping[str, Any]) -> float:
    """The learning rate at ``step`` as a multiple of ``cfg["lr"]``, by the schedule ``cfg["schedule"]`` names."""
    return schedule.build(
        cfg.get("schedule", "cosine"), step,
        lr=cfg["lr"], min_lr=cfg["min_lr"], warmup_steps=cfg["warmup_steps"], decay_steps=cfg["decay_steps"],
    )


def lr_at(step: int, cfg: Mapping[str, Any]) -> float:
    """The learning rate at ``step``: what every parameter group gets before that step's update."""
    return cfg["lr"] * lr_factor(step, cfg)

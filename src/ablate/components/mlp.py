"""MLP variants: the position-wise feed-forward sublayer of every block.

Every variant names its layers as GPT-2 does: ``c_fc`` reads the residual stream, ``c_proj`` writes
back into it (GPT-2's init finds it through ``Block.residual_projections()``). The gated variants
(Shazeer 2020, "GLU Variants Improve Transformer") fuse their gate and up projections into one
``c_fc`` of width 2·hidden, gate half first, and fix their own gate: the ``activation`` slot applies
to ``standard`` only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ablate.components.slots import activation as activation_slot
from ablate.components.slots import mlp
from ablate.errors import ConfigError


@mlp.register("standard")
class MLP(nn.Module):
    """GPT-2's: c_proj(activation(c_fc(x))), C → 4C → activation → C; the activation is its own slot."""

    def __init__(self, n_embd: int, bias: bool, activation: Mapping[str, Any] | str) -> None:
        super().__init__()
        self.c_fc = nn.Linear(n_embd, 4 * n_embd, bias=bias)
        self.act = activation_slot.build(activation)
        self.c_proj = nn.Linear(4 * n_embd, n_embd, bias=bias)  # writes into the residual stream

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.act(self.c_fc(x)))


def gated_hidden(n_embd: int, multiple_of: int = 1) -> int:
    """The gated MLP's hidden size that matches the standard MLP's weight count: round(2/3 · 4C),
    rounded up to a multiple of ``multiple_of``.

    The standard MLP has 2·4C·C weights, a gated one 3·H·C, so H = 8C/3 matches exactly when 3 divides C
    and round(8C/3) misses by at most C weights (a third of one hidden unit) otherwise; multiple_of > 1
    (LLaMA uses 256) trades that match for hardware-friendly sizes. With biases the gated MLP has 2H + C
    of them against the standard 4C + C."""
    hidden = (8 * n_embd + 1) // 3  # round(8C/3): 8C/3 is never halfway between integers
    return -(-hidden // multiple_of) * multiple_of  # round up to a multiple


class GatedMLP(nn.Module):
    """c_proj(gate(x W_gate) * (x W_up)) with W_gate and W_up fused into c_fc; subclasses fix the gate."""

    def __init__(
        self, n_embd: int, bias: bool, activation: Mapping[str, Any] | str, hidden: int | None, multiple_of: int
    ) -> None:
        super().__init__()
        if not isinstance(multiple_of, int) or isinstance(multiple_of, bool) or multiple_of <= 0:
            raise ConfigError(f"model.mlp.multiple_of={multiple_of!r} must be a positive integer (1: no rounding)")
        if hidden is None:
            hidden = gated_hidden(n_embd, multiple_of)
        elif not isinstance(hidden, int) or isinstance(hidden, bool) or hidden <= 0:
            raise ConfigError(
                f"model.mlp.hidden={hidden!r} must be a positive integer, or null for round(8·n_embd/3) "
                f"({gated_hidden(n_embd, multiple_of)} here), which matches the standard MLP's parameter count"
            )
        self.hidden = hidden
        # rows [0, hidden) are W_gate, rows [hidden, 2·hidden) W_up: one matmul for both
        self.c_fc = nn.Linear(n_embd, 2 * hidden, bias=bias)
        self.c_proj = nn.Linear(hidden, n_embd, bias=bias)  # writes into the residual stream

    @staticmethod
    def gate(x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.c_fc(x).chunk(2, dim=-1)  # each (B, T, hidden)
        return self.c_proj(self.gate(gate) * up)


@mlp.register("swiglu", hidden=None, multiple_of=1)
class SwiGLU(GatedMLP):
    """c_proj(silu(x W_gate) * (x W_up)), hidden round(8C/3) by default (LLaMA's MLP); ignores model/activation."""

    gate = staticmethod(F.silu)


@mlp.register("geglu", hidden=None, multiple_of=1)
class GEGLU(GatedMLP):
    """c_proj(gelu(x W_gate) * (x W_up)), exact (erf) GELU, hidden round(8C/3) by default; ignores model/activation."""

    gate = staticmethod(F.gelu)


@mlp.register("reglu", hidden=None, multiple_of=1)
class ReGLU(GatedMLP):
    """c_proj(relu(x W_gate) * (x W_up)), hidden round(8C/3) by default; ignores model/activation."""

    gate = staticmethod(F.relu)

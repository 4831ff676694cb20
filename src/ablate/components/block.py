"""Transformer blocks: the ``norm`` slot decides where the layer norms sit relative to the residual adds.

Every block has the same parts under GPT-2's names (``ln_1 attn ln_2 mlp``); variants differ only in
how ``forward`` wires them, and in whether the model needs a final norm (``ln_f``) before the head.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from ablate.components.attention import CausalSelfAttention
from ablate.components.slots import activation, layernorm, norm

if TYPE_CHECKING:
    from ablate.components.positional import Positional
    from ablate.model import GPTConfig


class MLP(nn.Module):
    """Position-wise feed-forward: C → 4C → activation → C."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=cfg.bias)
        self.act = activation.build(cfg.activation)
        self.c_proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=cfg.bias)  # writes into the residual stream

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.act(self.c_fc(x)))


class Block(nn.Module):
    """The parts every block has; subclasses define the wiring."""

    #: whether the model applies a final layer norm (ln_f) after the last block
    final_norm: bool

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = layernorm.build(cfg.layernorm, cfg.n_embd, cfg.bias)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = layernorm.build(cfg.layernorm, cfg.n_embd, cfg.bias)
        self.mlp = MLP(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def residual_projections(self) -> list[nn.Linear]:
        """The layers whose output is added to the residual stream (GPT-2 scales their init by 1/sqrt(2L))."""
        return [self.attn.c_proj, self.mlp.c_proj]


@norm.register("pre")
class PreNormBlock(Block):
    """GPT-2: x + f(norm(x)) for each sublayer, and a final norm before the head."""

    final_norm = True

    def forward(self, x: torch.Tensor, pos: Positional) -> torch.Tensor:
        x = x + self.drop(self.attn(self.ln_1(x), pos))
        x = x + self.drop(self.mlp(self.ln_2(x)))
        return x


@norm.register("post")
class PostNormBlock(Block):
    """The seed (and the original Transformer): norm(x + f(x)), dropout after each norm, no final norm."""

    final_norm = False

    def forward(self, x: torch.Tensor, pos: Positional) -> torch.Tensor:
        x = self.drop(self.ln_1(x + self.attn(x, pos)))
        x = self.drop(self.ln_2(x + self.mlp(x)))
        return x

"""Transformer blocks: the ``norm`` slot decides where the layer norms sit relative to the residual adds.

Every block has the same parts under GPT-2's names (``ln_1 attn ln_2 mlp``), except that a block whose
sublayers share one norm has no ``ln_2``; variants differ only in how ``forward`` wires them, and in
whether the model needs a final norm (``ln_f``) before the head.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from ablate.components.attention import CausalSelfAttention
from ablate.components.slots import layernorm, mlp, norm

if TYPE_CHECKING:
    from ablate.components.positional import Positional
    from ablate.model import GPTConfig


class Block(nn.Module):
    """The parts every block has; subclasses define the wiring."""

    #: whether the model applies a final layer norm (ln_f) after the last block
    final_norm: bool
    #: whether the MLP has its own norm (ln_2); a block that feeds ln_1's output to both sublayers has
    #: none, since a norm that no path uses would be a parameter without a gradient
    has_ln_2: bool = True

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = layernorm.build(cfg.layernorm, cfg.n_embd, cfg.bias)
        self.attn = CausalSelfAttention(cfg)
        if self.has_ln_2:
            self.ln_2 = layernorm.build(cfg.layernorm, cfg.n_embd, cfg.bias)
        self.mlp = mlp.build(cfg.mlp, cfg.n_embd, cfg.bias, cfg.activation)
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


@norm.register("parallel")
class ParallelBlock(Block):
    """GPT-J / PaLM: x + attn(ln_1(x)) + mlp(ln_1(x)), one norm shared by both sublayers, and a final norm.

    Attention and MLP read the same normalised input, so they can run side by side; there is no ln_2."""

    final_norm = True
    has_ln_2 = False

    def forward(self, x: torch.Tensor, pos: Positional) -> torch.Tensor:
        h = self.ln_1(x)
        return x + self.drop(self.attn(h, pos)) + self.drop(self.mlp(h))

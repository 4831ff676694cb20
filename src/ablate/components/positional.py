"""Positional variants.

A positional variant is a module at ``transformer.wpe`` with two hooks, so variants that act at the
embedding (learned, sinusoidal) and variants that act inside attention (rotary, ALiBi) share one slot:

- ``forward(x)`` adds position information to the token embeddings, ``(B, T, C) -> (B, T, C)``;
- ``rotate(q, k)`` transforms queries and keys inside every attention layer, ``(B, nh, T, hs)`` each.

Each hook defaults to the identity.
"""

from __future__ import annotations

import torch
from torch import nn

from ablate.components.slots import positional
from ablate.errors import ConfigError


class Positional(nn.Module):
    """Base class: no position information (both hooks are the identity)."""

    #: longest sequence the variant can encode, or None when it has no limit
    max_len: int | None = None

    def __init__(self, n_embd: int, n_head: int, block_size: int) -> None:
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def rotate(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return q, k


@positional.register("none")
class NoPositional(Positional):
    """No positional information at all (a causal decoder can still infer some from the mask)."""


@positional.register("learned")
class LearnedPositional(Positional):
    """GPT-2's learned table: one trained vector per position, added to the token embedding."""

    def __init__(self, n_embd: int, n_head: int, block_size: int) -> None:
        super().__init__(n_embd, n_head, block_size)
        self.max_len = block_size
        self.weight = nn.Parameter(torch.empty(block_size, n_embd))  # GPT-2's name: transformer.wpe.weight
        nn.init.normal_(self.weight)  # PyTorch's nn.Embedding default, N(0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = x.size(1)
        if T > self.max_len:
            raise ConfigError(
                f"sequence length {T} exceeds the learned positional table ({self.max_len} positions); "
                f"use at most {self.max_len} tokens, raise model.block_size, or pick "
                f"model/positional=sinusoidal (it extrapolates)"
            )
        return x + self.weight[:T]  # (B, T, C) + (T, C)


def sinusoidal_table(length: int, dim: int) -> torch.Tensor:
    """PE[pos, 2i] = sin(pos / 10000^(2i/dim)), PE[pos, 2i+1] = cos(pos / 10000^(2i/dim)); shape (length, dim)."""
    pos = torch.arange(length, dtype=torch.float64).unsqueeze(1)  # (length, 1)
    two_i = torch.arange(0, dim, 2, dtype=torch.float64)  # (ceil(dim/2),)
    angle = pos / 10000.0 ** (two_i / dim)  # (length, ceil(dim/2))
    table = torch.empty(length, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(angle)
    table[:, 1::2] = torch.cos(angle[:, : dim // 2])  # an odd dim has one more sin column than cos
    return table.float()


@positional.register("sinusoidal")
class SinusoidalPositional(Positional):
    """The fixed sin/cos table of "Attention Is All You Need", indexed by position (batch-first input)."""

    def __init__(self, n_embd: int, n_head: int, block_size: int) -> None:
        super().__init__(n_embd, n_head, block_size)
        self.n_embd = n_embd
        # Not persistent: it is a function of the sizes, so checkpoints need not carry it.
        self.register_buffer("table", sinusoidal_table(block_size, n_embd), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = x.size(1)
        # The seed indexes this table with x.size(0), the batch axis; positions are axis 1 here.
        table = self.table if T <= self.table.size(0) else sinusoidal_table(T, self.n_embd).to(x.device)
        return x + table[:T].to(x.dtype)  # (B, T, C) + (T, C)


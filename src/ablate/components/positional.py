"""Positional variants.

A positional variant is a module at ``transformer.wpe`` with three hooks, so variants that act at the
embedding (learned, sinusoidal) and variants that act inside attention (rotary, ALiBi) share one slot:

- ``forward(x)`` adds position information to the token embeddings, ``(B, T, C) -> (B, T, C)``;
- ``rotate(q, k)`` transforms queries and keys inside every attention layer, ``(B, nh, T, hs)`` each;
- ``attn_bias(T, device, dtype)`` returns a float ``(nh, T, T)`` bias added to the attention scores,
  causal ``-inf`` included, or None (the default): attention then runs with ``is_causal=True`` and
  no mask is ever built.

``forward`` and ``rotate`` default to the identity.
"""

from __future__ import annotations

import math

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

    def attn_bias(self, T: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor | None:
        """A float ``(nh, T, T)`` bias for the attention scores that already holds the causal ``-inf``;
        None keeps attention on SDPA's ``is_causal=True`` path, where no T×T mask exists."""
        return None


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


@positional.register("sinusoidal", scale=1.0)
class SinusoidalPositional(Positional):
    """The fixed sin/cos table of "Attention Is All You Need", indexed by position (batch-first input), times
    ``scale`` (``model.positional.scale``).

    The table's entries have RMS 1/√2. The paper adds it to token embeddings multiplied by √d_model (RMS about 1
    with its init), so positions and tokens arrive at similar sizes. GPT-2's init draws token embeddings from
    N(0, 0.02) and nothing rescales them, so ``scale=1`` (the default, the paper's table as written) adds
    positions 35 times the size of the tokens. ``scale=0.0283`` (0.02·√2) gives the table the RMS of GPT-2's token
    embeddings and of its learned positional table at init: a comparison of the two that is not also one of scale.
    """

    def __init__(self, n_embd: int, n_head: int, block_size: int, scale: float) -> None:
        super().__init__(n_embd, n_head, block_size)
        self.n_embd, self.scale = n_embd, scale
        # Not persistent: it is a function of the sizes, so checkpoints need not carry it.
        self.register_buffer("table", sinusoidal_table(block_size, n_embd), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = x.size(1)
        # The seed indexes this table with x.size(0), the batch axis; positions are axis 1 here.
        table = self.table if T <= self.table.size(0) else sinusoidal_table(T, self.n_embd).to(x.device)
        if self.scale == 1.0:  # the paper's table, with the bits it had before the option existed
            return x + table[:T].to(x.dtype)  # (B, T, C) + (T, C)
        return x + (self.scale * table[:T]).to(x.dtype)  # (B, T, C) + (T, C)


@positional.register("rotary", base=10000.0)
class RotaryPositional(Positional):
    """RoPE: rotates each (q, k) channel pair (i, i + hs/2) by angle t·base^(-2i/hs) at position t.

    A rotation by t·θ of q at position m and k at position n leaves q·k depending on m − n only
    (Su et al. 2021, "RoFormer"). Channels pair as (i, i + hs/2), GPT-NeoX's and Hugging Face Llama's
    layout, rather than RoFormer's interleaved (2i, 2i + 1): the same model up to a permutation of
    q and k's channels, and two contiguous halves instead of strided ones. No parameters; it works
    for any length: cos/sin are cached up to block_size and computed on the fly beyond it.
    """

    def __init__(self, n_embd: int, n_head: int, block_size: int, base: float) -> None:
        super().__init__(n_embd, n_head, block_size)
        hs = n_embd // n_head
        if hs % 2:
            raise ConfigError(
                f"model/positional=rotary rotates channel pairs, so it needs an even head size; "
                f"model.n_embd={n_embd} / model.n_head={n_head} = {hs}"
            )
        self.head_size = hs
        self.base = base
        cos, sin = self.cos_sin(block_size)
        # Not persistent: functions of the sizes, so checkpoints need not carry them.
        self.register_buffer("cos", cos, persistent=False)  # (block_size, hs/2)
        self.register_buffer("sin", sin, persistent=False)

    def cos_sin(self, length: int, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin of the angles t·θ_i, θ_i = base^(-2i/hs), each ``(length, hs/2)``."""
        # float64 so that angles at long positions keep their precision before the cast
        theta = self.base ** (-torch.arange(0, self.head_size, 2, dtype=torch.float64, device=device) / self.head_size)
        angle = torch.arange(length, dtype=torch.float64, device=device).unsqueeze(1) * theta  # (length, hs/2)
        return angle.cos().float(), angle.sin().float()

    def rotate(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        T = q.size(-2)
        cos, sin = (self.cos[:T], self.sin[:T]) if T <= self.cos.size(0) else self.cos_sin(T, q.device)
        cos, sin = cos.to(q.dtype), sin.to(q.dtype)  # q's dtype: SDPA needs q, k and v alike under autocast
        return _rotate_pairs(q, cos, sin), _rotate_pairs(k, cos, sin)


def _rotate_pairs(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each channel pair (x1_i, x2_i) = (x_i, x_{i+hs/2}) by the angle whose cos/sin are given."""
    x1, x2 = x.chunk(2, dim=-1)  # each (B, nh, T, hs/2)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)  # (B, nh, T, hs)


def alibi_slopes(n_head: int) -> list[float]:
    """ALiBi's head slopes: 2^(-8i/n) for i = 1..n when n is a power of two; otherwise the slopes of
    the nearest lower power of two p, then every other slope of 2p, as the paper's reference code does."""
    if math.log2(n_head).is_integer():
        return [2 ** (-8 * i / n_head) for i in range(1, n_head + 1)]
    p = 2 ** math.floor(math.log2(n_head))
    return alibi_slopes(p) + alibi_slopes(2 * p)[0::2][: n_head - p]


@positional.register("alibi")
class ALiBiPositional(Positional):
    """ALiBi: adds slope_h · (j − i) to head h's score of query i for key j ≤ i, −inf for j > i (Press et al. 2022).

    The bias penalises attention linearly with distance, at a different geometric rate per head
    (see ``alibi_slopes``); no embeddings and no parameters, so it works at any length.
    """

    def __init__(self, n_embd: int, n_head: int, block_size: int) -> None:
        super().__init__(n_embd, n_head, block_size)
        # Not persistent: a function of n_head, so checkpoints need not carry it.
        self.register_buffer("slopes", torch.tensor(alibi_slopes(n_head)), persistent=False)  # (nh,)

    def attn_bias(self, T: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        pos = torch.arange(T, device=device)
        distance = pos.unsqueeze(0) - pos.unsqueeze(1)  # (T, T): j - i, negative for past keys
        bias = self.slopes.to(device).view(-1, 1, 1) * distance  # (nh, T, T), in float32
        # the causal mask lives in the bias: SDPA gets one float mask instead of is_causal=True
        return bias.masked_fill(distance > 0, float("-inf")).to(dtype)

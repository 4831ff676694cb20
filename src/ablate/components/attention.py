"""Causal self-attention and its two slots: the q/k/v projection (``qkv``) and the score scale (``attn_scale``).

Attention always runs on ``F.scaled_dot_product_attention`` with ``is_causal=True`` and an explicit
``scale=``, so every variant gets the fused (flash / memory-efficient) kernels and no T×T mask is
ever materialised on the hot path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from ablate.components.slots import attn_scale, qkv

if TYPE_CHECKING:
    from ablate.components.positional import Positional
    from ablate.model import GPTConfig


@attn_scale.register("head_dim")
def head_dim_scale(n_embd: int, n_head: int) -> float:
    """1/sqrt(head_dim), "Attention Is All You Need" and GPT-2."""
    return (n_embd // n_head) ** -0.5


@attn_scale.register("embed_size")
def embed_size_scale(n_embd: int, n_head: int) -> float:
    """1/sqrt(n_embd), the seed's: softer attention by a factor sqrt(n_head)."""
    return n_embd**-0.5


@qkv.register("fused")
class FusedQKV(nn.Linear):
    """GPT-2's c_attn: one C→3C projection of the whole residual stream; heads are split after it."""

    def __init__(self, n_embd: int, n_head: int, bias: bool) -> None:
        super().__init__(n_embd, 3 * n_embd, bias=bias)
        self.n_head = n_head

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        B, T, C = x.shape
        qkv = super().forward(x).view(B, T, 3, self.n_head, C // self.n_head)  # (B, T, 3, nh, hs)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, nh, T, hs)
        return q, k, v


@qkv.register("per_head_shared")
class PerHeadSharedQKV(nn.Module):
    """The seed's: heads split first, then bias-free hs→hs q, k, v projections shared by all heads.

    3·hs² weights instead of GPT-2's 3·C² (+ biases): every head sees the same projections."""

    def __init__(self, n_embd: int, n_head: int, bias: bool) -> None:
        super().__init__()
        hs = n_embd // n_head
        self.n_head = n_head
        # Bias-free whatever model.bias says: that is the seed's definition of this variant.
        self.q = nn.Linear(hs, hs, bias=False)
        self.k = nn.Linear(hs, hs, bias=False)
        self.v = nn.Linear(hs, hs, bias=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        B, T, C = x.shape
        x = x.view(B, T, self.n_head, C // self.n_head)  # (B, T, nh, hs)
        # One matmul for the three projections: the weights are concatenated along the output axis.
        w = torch.cat([self.q.weight, self.k.weight, self.v.weight])  # (3hs, hs)
        q, k, v = F.linear(x, w).transpose(1, 2).chunk(3, dim=-1)  # each (B, nh, T, hs)
        return q, k, v


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention; the projection and the scale are slots."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.c_attn = qkv.build(cfg.qkv, cfg.n_embd, cfg.n_head, cfg.bias)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)  # writes into the residual stream
        self.scale = attn_scale.build(cfg.attn_scale, cfg.n_embd, cfg.n_head)
        self.dropout = cfg.attn_dropout

    def attention_probs(self, x: torch.Tensor, pos: Positional) -> torch.Tensor:
        """The attention weights ``(B, nh, T, T)``, computed explicitly (for diagnostics, not training)."""
        q, k, _ = self.c_attn(x)
        q, k = pos.rotate(q, k)
        T = x.size(1)
        scores = (q @ k.transpose(-2, -1)) * self.scale  # (B, nh, T, T)
        causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        return scores.masked_fill(~causal, float("-inf")).softmax(dim=-1)

    def forward(self, x: torch.Tensor, pos: Positional) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x)  # each (B, nh, T, hs)
        q, k = pos.rotate(q, k)
        y = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, scale=self.scale, dropout_p=self.dropout if self.training else 0.0
        )  # (B, nh, T, hs)
        y = y.transpose(1, 2).reshape(B, T, C)  # re-assemble the heads side by side
        return self.c_proj(y)

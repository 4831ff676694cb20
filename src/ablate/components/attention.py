"""Causal self-attention and its three slots: the q/k/v projection (``qkv``), the score scale
(``attn_scale``) and the per-head normalisation of q and k (``qk_norm``).

Attention always runs on ``F.scaled_dot_product_attention`` with an explicit ``scale=``. It runs with
``is_causal=True`` and no mask, so every variant gets the fused (flash / memory-efficient) kernels and
no T×T mask is ever materialised, unless the positional variant supplies a score bias (ALiBi): then that
float bias, causal ``-inf`` included, is SDPA's ``attn_mask``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from ablate.components.slots import attn_scale, qk_norm, qkv

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
    """Multi-head causal self-attention; the projection, the scale and the q/k normalisation are slots."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.c_attn = qkv.build(cfg.qkv, cfg.n_embd, cfg.n_head, cfg.bias)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)  # writes into the residual stream
        self.scale = attn_scale.build(cfg.attn_scale, cfg.n_embd, cfg.n_head)
        self.qk_norm = qk_norm.build(cfg.qk_norm, cfg.n_embd, cfg.n_head)
        self.dropout = cfg.attn_dropout

    def queries_keys_values(self, x: torch.Tensor, pos: Positional) -> tuple[torch.Tensor, ...]:
        """q, k, v ``(B, nh, T, hs)`` as they enter the dot product: projected, normalised, then rotated.

        q/k normalisation comes before rotary (as in OLMo-2, Qwen3, Gemma 3): a per-channel gain applied
        after the rotation would scale the two channels of a rotated pair differently and break RoPE's
        dependence on m − n alone; before it, the rotation (orthogonal) keeps the normalised RMS."""
        q, k, v = self.c_attn(x)  # each (B, nh, T, hs)
        q, k = self.qk_norm(q, k)
        q, k = pos.rotate(q, k)
        return q, k, v

    def attention_probs(self, x: torch.Tensor, pos: Positional) -> torch.Tensor:
        """The attention weights ``(B, nh, T, T)``, computed explicitly (for diagnostics, not training)."""
        q, k, _ = self.queries_keys_values(x, pos)
        T = x.size(1)
        scores = (q @ k.transpose(-2, -1)) * self.scale  # (B, nh, T, T)
        bias = pos.attn_bias(T, x.device, scores.dtype)
        if bias is not None:
            return (scores + bias).softmax(dim=-1)  # the bias holds the causal -inf
        causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        return scores.masked_fill(~causal, float("-inf")).softmax(dim=-1)

    def forward(self, x: torch.Tensor, pos: Positional) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.queries_keys_values(x, pos)  # each (B, nh, T, hs)
        # None for every positional variant but ALiBi: SDPA then masks causally itself and no mask exists
        bias = pos.attn_bias(T, x.device, q.dtype)
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=bias,
            is_causal=bias is None,
            scale=self.scale,
            dropout_p=self.dropout if self.training else 0.0,
        )  # (B, nh, T, hs)
        y = y.transpose(1, 2).reshape(B, T, C)  # re-assemble the heads side by side
        return self.c_proj(y)


@qk_norm.register("none")
class NoQKNorm(nn.Module):
    """q and k unchanged (GPT-2); no parameters."""

    def __init__(self, n_embd: int, n_head: int) -> None:
        super().__init__()

    def forward(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return q, k


@qk_norm.register("rms", eps=1e-6)
class RMSQKNorm(nn.Module):
    """q / sqrt(mean(q²) + eps) · g_q and the same for k (own gain g_k), over each head's hs channels.

    Bounds the attention logits, which otherwise can grow until the softmax saturates (Dehghani et
    al. 2023; Qwen3 and Gemma 3 normalise per head like this, OLMo-2 over all heads at once). The
    gains, PyTorch's nn.RMSNorm, are shared by all heads and have no bias whatever model.bias says.
    Applied before rotary; ``CausalSelfAttention.queries_keys_values`` says why."""

    def __init__(self, n_embd: int, n_head: int, eps: float) -> None:
        super().__init__()
        self.q_norm = nn.RMSNorm(n_embd // n_head, eps=eps)
        self.k_norm = nn.RMSNorm(n_embd // n_head, eps=eps)

    def forward(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.q_norm(q), self.k_norm(k)  # each (B, nh, T, hs), normalised over hs

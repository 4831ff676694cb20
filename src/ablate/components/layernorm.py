"""Layer-norm variants. Each keeps GPT-2's parameter names (``weight``, and ``bias`` where it has one) so
that init and weight conversion treat every variant alike; a test checks that no variant renames one."""

import torch
from torch import nn

from ablate.components.slots import layernorm


@layernorm.register("torch", eps=1e-5)
class TorchLayerNorm(nn.LayerNorm):
    """PyTorch's nn.LayerNorm: (x - mean) / sqrt(var_biased + eps) · weight + bias (GPT-2's)."""

    def __init__(self, ndim: int, bias: bool, eps: float) -> None:
        super().__init__(ndim, eps=eps, bias=bias)


@layernorm.register("custom", eps=1e-6)
class CustomLayerNorm(nn.Module):
    """The seed's hand-written norm: (x - mean) / (std_unbiased + eps) · weight + bias, eps 1e-6 as the seed."""

    def __init__(self, ndim: int, bias: bool, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The seed's formula with fewer, cheaper kernels than its chain (and than torch.std_mean's slow path):
        # centre once, reuse the centred values for the unbiased variance, and fuse scale and shift.
        xc = x - x.mean(dim=-1, keepdim=True)  # (B, T, C)
        std = (xc.square().sum(dim=-1, keepdim=True) / (x.size(-1) - 1)).sqrt()  # unbiased, (B, T, 1)
        scale = (std + self.eps).reciprocal()
        if self.bias is None:
            return xc * scale * self.weight
        return torch.addcmul(self.bias, xc * scale, self.weight)


@layernorm.register("rms", eps=1e-6)
class RMSNorm(nn.RMSNorm):
    """PyTorch's nn.RMSNorm: x / sqrt(mean(x²) + eps) · weight, eps 1e-6; it has no bias and ignores model.bias.

    No mean is subtracted and nothing is added back (Zhang & Sennrich 2019), so there is no bias to
    have: the ``bias`` argument every layernorm variant receives is accepted and ignored. eps 1e-6 is
    the original LLaMA's, Qwen's and OLMo-2's (GPT-2's LayerNorm uses 1e-5)."""

    def __init__(self, ndim: int, bias: bool, eps: float) -> None:
        super().__init__(ndim, eps=eps)

"""Layer-norm variants. Each keeps GPT-2's parameter names (``weight``, and ``bias`` where it has one) so
that init and weight conversion treat every variant alike; a test checks that no variant renames one."""

import math

import torch
from torch import nn

from ablate.components.slots import layernorm


@layernorm.register("torch", eps=1e-5)
class TorchLayerNorm(nn.LayerNorm):
    """PyTorch's nn.LayerNorm: (x - mean) / sqrt(var_biased + eps) · weight + bias (GPT-2's)."""

    def __init__(self, ndim: int, bias: bool, eps: float) -> None:
        super().__init__(ndim, eps=eps, bias=bias)


_TINY = 1e-30  # added to the biased variance inside the fused kernel: 0 for any variance above ~1e-23


class _StdPlusEpsNorm(torch.autograd.Function):
    """(x - mean) / (std_unbiased + eps) · weight + bias, on PyTorch's fused layer-norm kernels.

    The seed's formula divides by (std + eps) where nn.LayerNorm divides by sqrt(var + eps), so it
    cannot call nn.LayerNorm as it is, and as a chain of tensor ops it costs ~10 kernels forward and ~20
    backward. But with rstd = 1/σ (σ the biased std, which the fused kernel returns) and std_unbiased = k·σ,
    k = sqrt(C / (C - 1)), per row
        (x - mean) / (std_unbiased + eps) = (x - mean)·rstd · f,   f = 1 / (k + eps·rstd),
    the fused norm (variance eps _TINY) times one number per row.

    Backward, with g = grad·weight and n = (x - mean)·rstd. Through n (f held fixed): the fused kernel's
    rstd·f·(g - mean(g)) - rstd·f·n·mean(g·n). Through f: df/drstd = -eps·f², drstd/dx = -rstd²·n/C, so
    + eps·rstd·f·(rstd·f·n·mean(g·n)). As eps·rstd·f = 1 - k·f, the sum is
    rstd·f·(g - mean(g)) - k·rstd·f²·n·mean(g·n). The fused kernel's backward given rstd·s for rstd (it
    rebuilds n from the rstd it is given) and grad·f/s for grad returns rstd·f·(g - mean(g)) -
    s²·rstd·f·n·mean(g·n): with s = sqrt(k·f) that is the gradient, and its weight gradient, the sum of
    grad·f·n, is the one needed too.
    ``tests/test_formulas.py`` checks both against autograd through the seed's chain."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, eps: float) -> torch.Tensor:
        C = x.size(-1)
        ctx.k = math.sqrt(C / (C - 1))  # std_unbiased / std_biased
        # z = (x - mean)·rstd·weight; mean, rstd: (B, T, 1). _TINY, not 0: a constant row gives 0, not 0/0
        z, mean, rstd = torch.native_layer_norm(x, (C,), weight, None, _TINY)  # (B, T, C)
        f = (rstd * eps + ctx.k).reciprocal()  # (B, T, 1)
        ctx.save_for_backward(x, weight, mean, rstd, f)
        return z * f if bias is None else torch.addcmul(bias, z, f)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight, mean, rstd, f = ctx.saved_tensors
        grad_x, grad_w, _ = torch.ops.aten.native_layer_norm_backward(
            grad * (f / ctx.k).sqrt(), x, (x.size(-1),), mean, rstd * (f * ctx.k).sqrt(), weight, None,
            [ctx.needs_input_grad[0], ctx.needs_input_grad[1], False])
        grad_b = grad.flatten(0, -2).sum(0) if ctx.needs_input_grad[2] else None  # False when bias is None
        return grad_x, grad_w, grad_b, None


@layernorm.register("custom", eps=1e-6)
class CustomLayerNorm(nn.Module):
    """The seed's hand-written norm: (x - mean) / (std_unbiased + eps) · weight + bias, eps 1e-6 as the seed,
    computed with PyTorch's fused layer-norm kernels (``_StdPlusEpsNorm``) instead of the seed's chain."""

    def __init__(self, ndim: int, bias: bool, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _StdPlusEpsNorm.apply(x, self.weight, self.bias, self.eps)


@layernorm.register("rms", eps=1e-6)
class RMSNorm(nn.RMSNorm):
    """PyTorch's nn.RMSNorm: x / sqrt(mean(x²) + eps) · weight, eps 1e-6; it has no bias and ignores model.bias.

    No mean is subtracted and nothing is added back (Zhang & Sennrich 2019), so there is no bias to
    have: the ``bias`` argument every layernorm variant receives is accepted and ignored. eps 1e-6 is
    the original LLaMA's, Qwen's and OLMo-2's (GPT-2's LayerNorm uses 1e-5)."""

    def __init__(self, ndim: int, bias: bool, eps: float) -> None:
        super().__init__(ndim, eps=eps)

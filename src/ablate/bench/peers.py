"""1. ablate's training step against Hugging Face's GPT-2 on the same settings."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ablate.bench.harness import Bench, per_step
from ablate.bench.models import hf_loss, optimizer_like, ours_loss
from ablate.lit import LitGPT


def bench_hf(b: Bench, module: LitGPT, batches: Sequence[torch.Tensor]) -> dict[str, Any]:
    """Our gpt2 preset against ``transformers.GPT2LMHeadModel``: same weights, batches, optimizer, precision.
    A third arm swaps HF's ``gelu_new`` (several tensor ops) for ``gelu_pytorch_tanh`` (one kernel)."""
    try:
        import transformers
    except ImportError:
        return {"status": "skipped: transformers is not installed"}
    from ablate.convert import load_gpt2_weights

    c = module.model.config

    def hf_model(activation: str) -> nn.Module:
        config = transformers.GPT2Config(
            vocab_size=c.vocab_size, n_positions=c.block_size, n_embd=c.n_embd, n_layer=c.n_layer, n_head=c.n_head,
            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, layer_norm_epsilon=1e-5, activation_function=activation,
            bos_token_id=0, eos_token_id=0,
        )
        return transformers.GPT2LMHeadModel(config).to(b.device).train()

    hf, hf_tanh = hf_model("gelu_new"), hf_model("gelu_pytorch_tanh")
    hf_tanh.load_state_dict(hf.state_dict())
    ours = load_gpt2_weights(copy.deepcopy(module.model), hf.state_dict()).train()
    with torch.no_grad(), b.autocast(b.amp):
        loss_diff = abs(ours_loss(ours, batches[0]).item() - hf_loss(hf, batches[0]).item())
    times = b.paired({
        "ablate": b.step_fn(ours, optimizer_like(module, ours)),
        "hf": b.step_fn(hf, optimizer_like(module, hf), hf_loss),
        "hf_gelu_pytorch_tanh": b.step_fn(hf_tanh, optimizer_like(module, hf_tanh), hf_loss),
    }, batches)
    return {
        "status": "ok", "attn_implementation": hf.config._attn_implementation, "loss_diff_same_weights": loss_diff,
        **{name: per_step(t, batches[0]) for name, t in times.items()},
        "ratio_hf_over_ours": times["hf"] / times["ablate"],
        "ratio_hf_gelu_pytorch_tanh_over_ours": times["hf_gelu_pytorch_tanh"] / times["ablate"],
    }

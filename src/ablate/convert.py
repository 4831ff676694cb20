"""GPT-2 weights into ablate: the state-dict layout of OpenAI's and Hugging Face's GPT-2 checkpoints.

Those checkpoints use the same names as our model, with two differences this module undoes:
their linear layers are ``Conv1D`` modules that store weights as (in, out), the transpose of
``nn.Linear``; and they carry non-parameter buffers (``attn.bias``, ``attn.masked_bias``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ablate.errors import CheckpointError
from ablate.model import GPT, GPTConfig

# Conv1D layers, stored (in, out) in GPT-2 checkpoints
_CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
# parameters with one row per vocabulary entry
_VOCAB_ROWS = ("transformer.wte.weight", "lm_head.weight", "lm_head.bias")
# GPT-2's released sizes: n_head cannot be read off the weights
GPT2_HEADS = {768: 12, 1024: 16, 1280: 20, 1600: 25}
# the slots GPT-2's weights fit
GPT2_CHOICES = {
    "positional": "learned",
    "norm": "pre",
    "layernorm": "torch",
    "qkv": "fused",
    "mlp": "standard",
    "qk_norm": "none",
}


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a GPT-2 state dict from ``.bin``/``.pt`` (never running code from it) or ``.safetensors``."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"model.init_from={path}: no such file; give a GPT-2 state dict (.bin .pt .safetensors)")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file  # installed with transformers / huggingface_hub

        return load_file(str(path))
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"model.init_from={path} is not a readable state dict ({type(e).__name__})") from None


def convert_gpt2_state_dict(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map a GPT-2 state dict (with or without the ``transformer.`` prefix) onto our parameter names."""
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        if key.endswith(("attn.bias", "attn.masked_bias")) and value.dim() != 1:
            continue  # causal-mask buffers, not parameters
        if not key.startswith(("transformer.", "lm_head.")):
            key = f"transformer.{key}"
        out[key] = value.t().contiguous() if key.endswith(_CONV1D) else value
    out.setdefault("lm_head.weight", out["transformer.wte.weight"])  # GPT-2 ties the head to wte
    return out


def gpt2_config_from_state_dict(sd: Mapping[str, torch.Tensor], n_head: int | None = None) -> GPTConfig:
    """The GPT-2 preset at the sizes these weights have."""
    sd = convert_gpt2_state_dict(sd)
    vocab_size, n_embd = sd["transformer.wte.weight"].shape
    n_layer = 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("transformer.h."))
    if n_head is None:
        if n_embd not in GPT2_HEADS:
            raise CheckpointError(f"n_embd={n_embd} is not a released GPT-2 size {sorted(GPT2_HEADS)}; pass n_head")
        n_head = GPT2_HEADS[n_embd]
    return GPTConfig(
        vocab_size=vocab_size, n_layer=n_layer, n_head=n_head, n_embd=n_embd,
        block_size=sd["transformer.wpe.weight"].shape[0], **{k: {"name": v} for k, v in GPT2_CHOICES.items()},
    )


def load_gpt2_weights(model: GPT, sd: Mapping[str, torch.Tensor]) -> GPT:
    """Copy GPT-2 weights into ``model``, which must have GPT-2's parameter layout at the same sizes.

    Slots that change no parameter (activation, attention scale, init) may differ: starting an
    ablation from GPT-2's weights is allowed."""
    wrong = {s: c for s, c in model.config.choices().items() if s in GPT2_CHOICES and c != GPT2_CHOICES[s]}
    if wrong:
        slot, choice = next(iter(wrong.items()))
        raise CheckpointError(
            f"GPT-2 weights need model/{slot}={GPT2_CHOICES[slot]}, not {choice} (use model=gpt2 with a GPT-2 size)"
        )
    ours = model.state_dict()
    theirs = convert_gpt2_state_dict(sd)
    n_layer = 1 + max(int(k.split(".")[2]) for k in theirs if k.startswith("transformer.h."))
    if n_layer != model.config.n_layer:
        raise CheckpointError(
            f"the GPT-2 weights have {n_layer} layers, the model model.n_layer={model.config.n_layer}; make them equal"
        )
    for key in _VOCAB_ROWS:  # a padded vocabulary (model.vocab_multiple): GPT-2's rows, then zeros
        value, rows = theirs.get(key), model.config.padded_vocab_size
        if value is not None and key in ours and value.shape[0] == model.config.vocab_size < rows:
            theirs[key] = torch.cat([value, value.new_zeros(rows - value.shape[0], *value.shape[1:])])
    for key, value in theirs.items():
        if key not in ours:
            hint = " (GPT-2 needs model.bias=true)" if key.endswith(".bias") and not model.config.bias else ""
            raise CheckpointError(f"GPT-2 weight {key} has no place in this model{hint}")
        if ours[key].shape != value.shape:
            raise CheckpointError(
                f"GPT-2 weight {key} has shape {tuple(value.shape)}, the model {tuple(ours[key].shape)}; "
                f"match the sizes (model/size, model.block_size, data.tokenizer=gpt2)"
            )
    missing = set(ours) - set(theirs)
    if missing:
        raise CheckpointError(f"the GPT-2 state dict lacks {sorted(missing)[0]} (and {len(missing) - 1} more)")
    model.load_state_dict(theirs)
    return model


def gpt2_from_state_dict(sd: Mapping[str, torch.Tensor], n_head: int | None = None, **overrides: Any) -> GPT:
    """A GPT-2 model holding these weights, e.g. ``gpt2_from_state_dict(GPT2LMHeadModel(...).state_dict())``;
    ``overrides`` set config fields, e.g. ``vocab_multiple=64`` (the padded rows start at zero)."""
    config = gpt2_config_from_state_dict(sd, n_head)
    for key, value in overrides.items():
        setattr(config, key, value)
    return load_gpt2_weights(GPT(config), sd)

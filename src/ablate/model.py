"""The GPT, assembled from one variant per slot.

The layout and parameter names are GPT-2's (``transformer.wte wpe h.N.{ln_1 attn.c_attn attn.c_proj ln_2
mlp.c_fc mlp.c_proj} ln_f lm_head``), so GPT-2 weights load by name (see ``ablate.convert``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import ablate.components  # noqa: F401  (registers every built-in variant)
from ablate.components import slots
from ablate.components.block import Block
from ablate.errors import ConfigError
from ablate.registry import SLOTS

SIZES = ("vocab_size", "n_layer", "n_head", "n_embd", "block_size")


def _default(name: str) -> Any:
    return field(default_factory=lambda: {"name": name})


@dataclass
class GPTConfig:
    """Everything that defines the architecture: sizes, flags, and one variant node per slot."""

    vocab_size: int
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 64
    dropout: float = 0.0  # on the embeddings and where the block variant puts it
    attn_dropout: float = 0.0  # on the attention probabilities
    bias: bool = True  # biases in linear layers and layer norms
    tie_embeddings: bool = True  # lm_head shares wte's weight (GPT-2); the seed has its own
    lm_head_bias: bool = False
    # pad the embedding and output layer to a multiple of this (GPUs: 64, 50257 -> 50304); the padded logits
    # are cut off, so loss and sampling are the unpadded model's. null or 1: no padding
    vocab_multiple: int | None = None
    # one node per slot: {"name": <variant>, **params}
    positional: dict = _default("learned")
    norm: dict = _default("pre")
    activation: dict = _default("gelu_tanh")
    attn_scale: dict = _default("head_dim")
    layernorm: dict = _default("torch")
    qkv: dict = _default("fused")
    mlp: dict = _default("standard")
    qk_norm: dict = _default("none")
    init: dict = _default("gpt2")

    def __post_init__(self) -> None:
        for name in SIZES:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"model.{name}={value!r} must be a positive integer")
        if self.n_embd % self.n_head:
            divisors = [h for h in range(1, self.n_embd + 1) if self.n_embd % h == 0 and h <= 64]
            raise ConfigError(
                f"model.n_embd={self.n_embd} is not divisible by model.n_head={self.n_head}; "
                f"n_head must divide n_embd, e.g. one of {divisors}"
            )
        m = self.vocab_multiple
        if m is not None and (not isinstance(m, int) or isinstance(m, bool) or m <= 0):
            raise ConfigError(f"model.vocab_multiple={m!r} must be a positive integer or null (no padding)")
        for name in ("dropout", "attn_dropout"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value < 1.0:
                raise ConfigError(f"model.{name}={value!r} must be a number in [0, 1)")
        for name in ("bias", "tie_embeddings", "lm_head_bias"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"model.{name}={getattr(self, name)!r} must be true or false")
        for slot in SLOTS.values():
            node = getattr(self, slot.name)
            if isinstance(node, str):
                node = {"name": node}
            if not isinstance(node, Mapping) or "name" not in node:
                raise ConfigError(f"model.{slot.name}={node!r} must name a variant: one of {', '.join(slot.names())}")
            setattr(self, slot.name, dict(node))
            slot.get(node["name"])  # an unknown variant fails here, naming the valid ones

    @classmethod
    def from_dict(cls, cfg: Mapping[str, Any], **overrides: Any) -> GPTConfig:
        """Build from a ``model`` config node, ignoring keys that are not architecture (``preset``, ``compile``)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in {**cfg, **overrides}.items() if k in names})

    def choices(self) -> dict[str, str]:
        """The variant chosen for each slot, e.g. ``{"positional": "learned", "norm": "pre", ...}``."""
        return {name: getattr(self, name)["name"] for name in SLOTS}

    def flags(self) -> dict[str, Any]:
        """The architecture settings that are neither sizes nor slots (``bias``, ``tie_embeddings``,
        ``lm_head_bias``, the dropouts): with ``choices()``, what tells two architectures of one size apart
        (``vocab_multiple`` does not: padding changes no loss)."""
        skip = {*SLOTS, *SIZES, "vocab_multiple"}
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}

    @property
    def padded_vocab_size(self) -> int:
        """``vocab_size`` rounded up to a multiple of ``vocab_multiple``: the rows of wte and lm_head."""
        m = self.vocab_multiple or 1
        return -(-self.vocab_size // m) * m


class GPT(nn.Module):
    """A decoder-only transformer language model."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        block_cls: type[Block] = slots.norm.get(config.norm["name"]).target
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.padded_vocab_size, config.n_embd),  # rows past vocab_size are never read
                wpe=slots.positional.build(config.positional, config.n_embd, config.n_head, config.block_size),
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList([slots.norm.build(config.norm, config) for _ in range(config.n_layer)]),
                ln_f=slots.layernorm.build(config.layernorm, config.n_embd, config.bias)
                if block_cls.final_norm
                else nn.Identity(),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.padded_vocab_size, bias=config.lm_head_bias)
        if config.tie_embeddings:
            # The output layer reads logits off the input embedding table (GPT-2, "weight tying").
            self.lm_head.weight = self.transformer.wte.weight
        slots.init.build(config.init, self)

    def residual_projections(self) -> list[nn.Linear]:
        return [proj for block in self.transformer.h for proj in block.residual_projections()]

    @property
    def padded_vocab_size(self) -> int:
        return self.config.padded_vocab_size

    def num_params(self) -> int:
        """Parameter count, tied weights counted once, padded vocabulary rows not counted."""
        pad = (self.padded_vocab_size - self.config.vocab_size) * self.config.n_embd
        pad *= 1 if self.config.tie_embeddings else 2
        pad += self.padded_vocab_size - self.config.vocab_size if self.config.lm_head_bias else 0
        return sum(p.numel() for p in self.parameters()) - pad

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits for every position, ``(B, T) -> (B, T, vocab)``, and the mean cross-entropy if targets are given."""
        x = self.transformer.wte(idx)  # (B, T, C)
        x = self.transformer.drop(self.transformer.wpe(x))  # add positions (for variants that do it here)
        for block in self.transformer.h:
            x = block(x, self.transformer.wpe)  # (B, T, C)
        x = self.transformer.ln_f(x)
        logits = self.lm_head(x)  # (B, T, padded vocab)
        if self.padded_vocab_size != self.config.vocab_size:
            logits = logits[..., : self.config.vocab_size]  # (B, T, vocab): padded ids can never be predicted
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1))
        return logits, loss

    @torch.no_grad()
    def attention_entropy(self, idx: torch.Tensor) -> list[float]:
        """Mean entropy (nats) of each layer's attention distributions on ``idx``: low means sharp,
        focused heads; log(T)/2-ish means attention spread evenly over the past. Diagnostic only."""
        inputs: list[torch.Tensor] = []
        hooks = [
            block.attn.register_forward_pre_hook(lambda _, args: inputs.append(args[0]))
            for block in self.transformer.h
        ]
        try:
            self.forward(idx)  # eager even when compiled: hooks and a diagnostic's shapes would each recompile
        finally:
            for hook in hooks:
                hook.remove()
        entropies = []
        for block, x in zip(self.transformer.h, inputs):
            p = block.attn.attention_probs(x, self.transformer.wpe)  # (B, nh, T, T)
            entropies.append(-(p * torch.log(p.clamp_min(1e-12))).sum(-1).mean().item())
        return entropies

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Sample ``max_new_tokens`` tokens after the prompt ``idx`` (B, T); the context is cropped to block_size."""
        for _ in range(max_new_tokens):
            context = idx[:, -self.config.block_size :]
            # eager even when compiled: every new context length would be a recompile, for one token each
            logits, _ = self.forward(context)
            logits = logits[:, -1, :] / max(temperature, 1e-8)  # (B, vocab)
            if top_k is not None:
                kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, [-1]]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            probs = F.softmax(logits.float(), dim=-1)
            idx = torch.cat([idx, torch.multinomial(probs, 1, generator=generator)], dim=1)
        return idx

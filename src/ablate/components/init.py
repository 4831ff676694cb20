"""Initialisation variants: functions applied to the whole model once it is built.

Init is keyed on module types and on each block's declared ``residual_projections()``, never on
parameter names, so renaming a layer cannot silently change its initialisation.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from torch import nn

from ablate.components.positional import LearnedPositional
from ablate.components.slots import init

if TYPE_CHECKING:
    from ablate.model import GPT


@init.register("gpt2", std=0.02)
def gpt2_init(model: GPT, std: float) -> None:
    """GPT-2's: linear and embedding weights N(0, 0.02), biases 0, residual projections N(0, 0.02/sqrt(2L))."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.Embedding, LearnedPositional)):
            nn.init.normal_(module.weight, mean=0.0, std=std)
    for proj in model.residual_projections():
        nn.init.normal_(proj.weight, mean=0.0, std=std / math.sqrt(2 * model.config.n_layer))


@init.register("torch_default")
def torch_default_init(model: GPT) -> None:
    """PyTorch's defaults, as the seed gets them (Linear: Kaiming-uniform; Embedding: N(0, 1)); changes nothing."""

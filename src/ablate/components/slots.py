"""The ablation axes. Each is a Hydra config group ``model/<name>``; variants register into them."""

from ablate.registry import Slot

positional = Slot("positional", "how token positions enter the model")
norm = Slot(
    "norm",
    "where a block's layer norms sit: before each sublayer (pre), after each residual add (post), "
    "or one norm shared by attention and MLP side by side (parallel)",
)
activation = Slot("activation", "the MLP's nonlinearity (mlp=standard; gated MLPs fix their own gate)")
attn_scale = Slot("attn_scale", "the factor q·k is multiplied by before the softmax")
layernorm = Slot("layernorm", "the normalisation layer's formula")
qkv = Slot("qkv", "how queries, keys and values are projected from the residual stream")
mlp = Slot("mlp", "the position-wise feed-forward sublayer: plain (C→4C→activation→C) or gated (GLU variants)")
qk_norm = Slot("qk_norm", "whether queries and keys are normalised per head before their dot product")
init = Slot("init", "how parameters are initialised")

"""The ablation axes. Each is a Hydra config group ``model/<name>``; variants register into them."""

from ablate.registry import Slot

positional = Slot("positional", "how token positions enter the model")
norm = Slot("norm", "where a block's layer norms sit: before each sublayer (pre) or after each residual add (post)")
activation = Slot("activation", "the MLP's nonlinearity")
attn_scale = Slot("attn_scale", "the factor q·k is multiplied by before the softmax")
layernorm = Slot("layernorm", "the normalisation layer's formula")
qkv = Slot("qkv", "how queries, keys and values are projected from the residual stream")
init = Slot("init", "how parameters are initialised")

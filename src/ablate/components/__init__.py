"""Every built-in variant. Importing this package registers them all (and their Hydra config nodes)."""

from ablate.components import activation, attention, block, init, layernorm, mlp, positional, slots  # noqa: F401

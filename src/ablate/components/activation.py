"""Activation variants for the MLP. Each is a module with no parameters."""

from torch import nn

from ablate.components.slots import activation


@activation.register("relu")
class ReLU(nn.ReLU):
    """max(0, x), the seed's choice."""

    def __init__(self) -> None:
        super().__init__()


@activation.register("gelu")
class GELU(nn.GELU):
    """Exact GELU, x·Φ(x) with the Gaussian CDF through erf."""

    def __init__(self) -> None:
        super().__init__(approximate="none")


@activation.register("gelu_tanh")
class GELUTanh(nn.GELU):
    """GPT-2's tanh approximation of GELU ("gelu_new" in Hugging Face), one fused kernel."""

    def __init__(self) -> None:
        super().__init__(approximate="tanh")

"""ablate: which design choice in a transformer matters, and by how much."""

__version__ = "0.1.0"

from ablate.gpu import register_resolvers  # noqa: E402  (the configs' ${ablate_gpu:...} must resolve anywhere)

register_resolvers()

"""ablate: which design choice in a transformer matters, and by how much."""

__version__ = "0.1.0"

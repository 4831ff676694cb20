"""``ablate-bench``: how fast ablate trains, in one process on one machine, and as whole processes against
nanoGPT (see ``ablate.bench.cli``).

One job per module: ``models`` (sizes, configs, what each arm builds), ``harness`` (paired timing), ``peers``
(Hugging Face's GPT-2), ``overhead`` (Lightning against a plain loop), ``variants`` (every slot's variants, FLOPs,
compile, bf16), ``machine`` (what it ran on), ``nanogpt`` (whole processes against nanoGPT's ``train.py``),
``markdown`` (the reports), ``cli`` (the command line).
"""

from ablate.bench.cli import main
from ablate.bench.markdown import markdown

__all__ = ["main", "markdown"]

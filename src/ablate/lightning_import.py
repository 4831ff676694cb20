"""Importing Lightning without the ``scipy.signal`` import it brings along.

Lightning imports torchmetrics, and torchmetrics, where scipy is installed (ablate needs it for its reports), imports
``scipy.signal`` at its own import for one thing: to add the alias ``scipy.signal.hamming`` (for a third-party audio
metric, SRMR) where scipy no longer has it. That import pulls in scipy.stats, interpolate, optimize and more: 1.2 s
of a 3.1 s Lightning import, of a 6 s start-up, on a 2-core AVX2 host (``python -X importtime``), and no run uses any
of it. While Lightning is imported, ``scipy.signal`` is a placeholder that already has the alias; any other public
name asked of it imports the real module and answers from that. The one difference left: in an ``ablate-train``
process the real ``scipy.signal``, when something imports it later, has no ``hamming`` alias (scipy's own name is
``scipy.signal.windows.hamming``).
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

SIGNAL = "scipy.signal"


@contextmanager
def signal_deferred() -> Iterator[types.ModuleType]:
    """Within: ``scipy.signal`` is a placeholder whose ``hamming`` is None and whose other names (a from-import, a
    submodule's ``__path__``) import the real module; after: the real module if that happened, else nothing."""
    placeholder = types.ModuleType(SIGNAL)
    placeholder.hamming = None  # torchmetrics adds the alias only where it is missing

    def real(name: str) -> Any:
        if name.startswith("__") and name not in ("__path__", "__all__"):
            # what a module without a file lacks (__file__: inspect.getmodule asks every module in sys.modules)
            raise AttributeError(f"module {SIGNAL!r} has no attribute {name!r}")
        if sys.modules.get(SIGNAL) is placeholder:
            del sys.modules[SIGNAL]
        return getattr(importlib.import_module(SIGNAL), name)

    placeholder.__getattr__ = real  # type: ignore[method-assign]  # a module's own __getattr__ (PEP 562)
    sys.modules[SIGNAL] = placeholder
    try:
        yield placeholder
    finally:
        if sys.modules.get(SIGNAL) is placeholder:
            del sys.modules[SIGNAL]


def import_lightning() -> None:
    """``import lightning`` with ``scipy.signal`` deferred to its first real use (the module docstring says why).
    Does nothing where either is already imported."""
    if "lightning" in sys.modules or SIGNAL in sys.modules:
        return
    with signal_deferred():
        import lightning  # noqa: F401

"""Machine probes: what the benchmark ran on (CPU, GPU, versions), a card's bf16 peak, other processes' CPU use."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch

PEAK_BF16 = [("H100 PCIe", 756e12), ("H100 NVL", 835e12), ("H100", 989e12), ("H200", 989e12), ("A100", 312e12)]


def environment(device: torch.device) -> dict[str, Any]:
    """The machine and the versions the numbers belong to."""
    from ablate.gpu import cpu_name
    from ablate.train import _version

    try:
        import transformers

        hf = transformers.__version__
    except ImportError:
        hf = "not installed"
    return {
        # the vector kernels PyTorch picked on this CPU (AVX2, AVX512, ...): hosts that share a model name differ
        "machine": {"cpu": cpu_name(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                    "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None},
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "lightning": L.__version__,
                     "transformers": hf, "ablate": _version()},
    }


def peak_bf16(gpu: str) -> float | None:
    """The card's bf16 dense peak in FLOP/s from its name (``PEAK_BF16``), or None for a card not listed."""
    return next((peak for key, peak in PEAK_BF16 if key in gpu), None)


def others_cpu_use(seconds: float = 2.0) -> float | None:
    """CPUs' worth of work that other processes did over ``seconds`` while this one slept (Linux's
    /proc/stat less this process's own time; None elsewhere). Unlike the load average, which still
    counts this process's start-up (importing torch and Lightning takes seconds of CPU), it sees only others."""

    def busy_s() -> float:  # user, nice, system, irq, softirq, steal: all but idle and iowait
        ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        return (sum(ticks[:3]) + sum(ticks[5:8])) / os.sysconf("SC_CLK_TCK")

    try:
        before, own = busy_s(), sum(os.times()[:2])
        time.sleep(seconds)
        return max(0.0, busy_s() - before - (sum(os.times()[:2]) - own)) / seconds
    except (OSError, ValueError):
        return None


def busy_warning(load: float, others: float | None) -> list[str]:
    """A warning when another process kept the CPUs busy at start (the load average only without /proc/stat)."""
    if not (others > 0.2 if others is not None else load > 0.5):
        return []
    busy = f"other processes used {others:.2f} CPUs" if others is not None else f"the load average was {load:.2f}"
    return [f"{busy} at start: another process was busy, so these timings are not to be trusted; rerun on a quiet "
            f"machine"]

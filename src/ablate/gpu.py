"""GPU defaults: chosen when a CUDA device is present, and exactly what they were on CPUs.

The configs name them through resolvers, so a run's resolved config (its record, its wandb config, its
checkpoint's hyperparameters) states what was chosen:

- ``trainer.precision: ${ablate_gpu:bf16-mixed,32-true}``: bf16 autocast on GPUs, fp32 elsewhere;
- ``model.compile: ${ablate_gpu:true,false}``: ``torch.compile`` of the model on GPUs;
- ``model.vocab_multiple: ${ablate_vocab_multiple:${data.tokenizer}}``: GPT-2's 50,257 tokens padded to a
  multiple of 64 (50,304) on GPUs, no padding (null) elsewhere;
- TF32 matmuls (``ablate-train`` sets ``torch.set_float32_matmul_precision("high")``) and fused AdamW
  (``optim.fused: null``) on GPUs; attention always runs on SDPA, which picks the flash kernel on GPUs.

``runtime()`` says what a running process actually uses, and on what host; ``LitGPT`` writes it into the run's
record.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

VOCAB_MULTIPLE_GPU = 64  # nanoGPT's measured speed-up: 50257 -> 50304 = 786 * 64


def cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def on_gpu(gpu_value: Any, cpu_value: Any) -> Any:
    """``${ablate_gpu:A,B}``: A when a CUDA device is present, else B."""
    return gpu_value if cuda() else cpu_value


def vocab_multiple(tokenizer: str) -> int | None:
    """``${ablate_vocab_multiple:${data.tokenizer}}``: 64 for GPT-2 BPE on a GPU, else null (no padding)."""
    return VOCAB_MULTIPLE_GPU if tokenizer == "gpt2" and cuda() else None


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("ablate_gpu"):
        OmegaConf.register_new_resolver("ablate_gpu", on_gpu)
    if not OmegaConf.has_resolver("ablate_vocab_multiple"):
        OmegaConf.register_new_resolver("ablate_vocab_multiple", vocab_multiple)


def cpu_name() -> str:
    """The CPU's model name (Linux's /proc/cpuinfo; elsewhere what the platform says, or "unknown")."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def runtime(device: Any, precision: str, optimizer: Any, model: Any) -> dict[str, Any]:
    """What this run computes with: device, precision, TF32, fused AdamW, compile, SDPA kernels, vocabulary padding,
    and the host: its CPU, the vector kernels PyTorch picked on it (hosts that share a model name differ, and the
    kernels' last bits with them: the same run's final loss differs by up to 0.003 nats between AVX2 and AVX-512
    hosts, ``reports/founding``), its threads."""
    import torch

    on_cuda = getattr(device, "type", str(device)) == "cuda"
    state = {
        "device": torch.cuda.get_device_name(device) if on_cuda else str(device),
        "cpu": cpu_name(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "precision": str(precision),
        "tf32_matmul": torch.get_float32_matmul_precision() != "highest" if on_cuda else False,
        # a chained optimizer (muon) states its AdamW member's kernel
        "fused_adamw": any(bool(getattr(o, "defaults", {}).get("fused"))
                           for o in getattr(optimizer, "optimizers", (optimizer,))),
        "compiled": bool(getattr(model, "_compiled_call_impl", None)),
        "vocab_size": model.config.vocab_size,
        "vocab_padded": model.padded_vocab_size,
    }
    if on_cuda:
        state["sdpa"] = {
            "flash": torch.backends.cuda.flash_sdp_enabled(),
            "mem_efficient": torch.backends.cuda.mem_efficient_sdp_enabled(),
            "math": torch.backends.cuda.math_sdp_enabled(),
        }
    return state

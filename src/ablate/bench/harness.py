"""The timing harness: paired comparisons that alternate their arms step by step, medians, the device's clock."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ablate.bench.models import ours_loss

Step = Callable[[torch.Tensor], None]
LossFn = Callable[[nn.Module, torch.Tensor], torch.Tensor]


@dataclass
class Bench:
    device: torch.device
    amp: torch.dtype | None  # autocast dtype of the size's training precision (None: fp32)
    steps: int
    warmup: int

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def autocast(self, dtype: torch.dtype | None) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None)

    def step_fn(self, model: nn.Module, optimizer: torch.optim.Optimizer, loss_of: LossFn = ours_loss,
                amp: torch.dtype | None | bool = True) -> Step:
        """One training step: forward, loss, backward, optimizer step, zero_grad (``amp=True``: self.amp)."""
        dtype = self.amp if amp is True else amp

        def step(batch: torch.Tensor) -> None:
            with self.autocast(dtype):  # type: ignore[arg-type]
                loss = loss_of(model, batch)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        return step

    def paired(self, arms: dict[str, Step], batches: Sequence[torch.Tensor]) -> dict[str, float]:
        """Median seconds per step of each arm; the arms alternate step by step (A B A B ...) after a warm-up."""
        for step in arms.values():
            for batch in batches[: self.warmup]:
                step(batch)
        times: dict[str, list[float]] = {name: [] for name in arms}
        for batch in batches[self.warmup : self.warmup + self.steps]:
            for name, step in arms.items():
                self.sync()
                start = time.perf_counter()
                step(batch)
                self.sync()
                times[name].append(time.perf_counter() - start)
        return {name: statistics.median(t) for name, t in times.items()}

    def footprint(self, model: nn.Module, optimizer: torch.optim.Optimizer, step: Step, batch: torch.Tensor
                  ) -> dict[str, float]:
        """Bytes one training step of ``model`` needs (its weights and AdamW state, plus on CUDA the allocator's
        peak rise during a step; on CPU its gradients and the activations autograd saves for backward), and
        matrix-product FLOPs per token of forward and backward as ``torch.utils.flop_counter`` counts them
        (attention included on GPUs; on CPUs it has no formula for the attention kernel)."""
        states = [t for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t)]
        memory = sum(t.numel() * t.element_size() for t in [*model.parameters(), *states])
        if self.device.type == "cuda":
            self.sync()
            before = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            step(batch)
            self.sync()
            memory += torch.cuda.max_memory_allocated(self.device) - before
        params = {p.untyped_storage().data_ptr() for p in model.parameters()}
        saved: dict[int, int] = {}

        def pack(t: torch.Tensor) -> torch.Tensor:
            if t.untyped_storage().data_ptr() not in params:  # a storage saved by several ops counts once
                saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), FlopCounterMode(display=False) as counter:
            with self.autocast(self.amp):
                loss = ours_loss(model, batch)
            loss.backward()
        if self.device.type == "cpu":
            memory += sum(saved.values()) + sum(p.numel() * p.element_size() for p in model.parameters())  # + grads
        model.zero_grad(set_to_none=True)
        return {"memory_bytes": memory, "matrix_flops_per_token": counter.get_total_flops() / batch[:, 1:].numel()}

    def matmul_rate(self, n: int, dtype: torch.dtype) -> float:
        """FLOP/s of an n×n by n×n matrix product, best of 5 after a warm-up."""
        x, times = torch.randn(n, n, device=self.device).to(dtype), []
        for _ in range(6):
            self.sync()
            start = time.perf_counter()
            x @ x
            self.sync()
            times.append(time.perf_counter() - start)
        return 2 * n**3 / min(times[1:])


def per_step(seconds: float, batch: torch.Tensor) -> dict[str, float]:
    return {"ms_per_step": seconds * 1e3, "tokens_per_s": batch.size(0) * (batch.size(1) - 1) / seconds}

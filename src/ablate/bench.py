"""``ablate-bench``: how fast ablate trains, in one process on one machine.

It measures a training step against Hugging Face's GPT-2, a whole ``ablate.train.run`` against a plain
PyTorch loop (Lightning's overhead), every variant of every slot against the ``gpt2`` preset, model
FLOPs, ``torch.compile`` and bf16, and writes ``<out>/<device>.md`` and ``<out>/<device>.json``.

Paired comparisons alternate their arms step by step (A B A B ...) after a warm-up and report medians,
so a slow patch of the machine hits every arm alike. Run it on a quiet machine: with 2 cores, any other
busy process slows a step many-fold (the report warns when another process used the CPUs at start)::

    ablate-bench                        # CPU: cpu-small and cpu-large; GPU: gpt2-small (bf16)
    ablate-bench --size cpu-small --no-compile --out /tmp/bench
    ablate-bench --quick --out /tmp/b   # a tiny smoke run (the test's)
"""

from __future__ import annotations

import argparse
import copy
import itertools
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ablate.atomic import atomic_write_json, atomic_write_text
from ablate.config import conf_dir, import_user_modules
from ablate.data import make_datamodule
from ablate.errors import AblateError, ArgumentParser
from ablate.lit import LitGPT
from ablate.recipe import build_optimizer, lr_at
from ablate.registry import SLOTS

Step = Callable[[torch.Tensor], None]
LossFn = Callable[[nn.Module, torch.Tensor], torch.Tensor]


# -- sizes, configs, models -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Size:
    overrides: tuple[str, ...]  # on top of the real composed config (model=gpt2, tiny Shakespeare)
    run_steps: int  # steps of each whole training run in the Lightning-overhead section
    repeats: int  # plain/Lightning run pairs per mode in that section (the median is reported)


SIZES = {
    "quick": Size(("model.n_layer=2", "model.n_head=2", "model.n_embd=32", "model.block_size=64",
                   "data.batch_size=8", "data.eval_batches=2", "sample.max_new_tokens=8"), 3, 1),
    # nanoGPT's CPU baby GPT, the default config
    # a whole run takes ~40 s here and its time drifts by a few percent: 4 pairs keep the median steady
    "cpu-small": Size(("model/size=tiny", "data.batch_size=12"), 500, 4),
    "cpu-large": Size(("model.n_layer=6", "model.n_head=6", "model.n_embd=384", "model.block_size=256",
                       "data.batch_size=8"), 100, 2),
    # GPT-2 small (124M) with GPT-2's BPE; batch 16 × 1024 fits an 80 GB GPU with room to spare
    "gpt2-small": Size(("model/size=small", "data.tokenizer=gpt2", "data.batch_size=16"), 500, 2),
}
DEVICE_OVERRIDES = {
    "cpu": ("trainer.accelerator=cpu",),
    # eager: the compile section times torch.compile on its own (model.compile resolves to true on GPUs)
    "cuda": ("trainer.accelerator=gpu", "trainer.precision=bf16-mixed", "optim.fused=true", "model.compile=false"),
}
# bf16 dense tensor-core peaks (FLOP/s), by a substring of torch.cuda.get_device_name(); first match wins
PEAK_BF16 = [("H100 PCIe", 756e12), ("H100 NVL", 835e12), ("H100", 989e12), ("H200", 989e12), ("A100", 312e12)]
# elementwise work a variant adds or saves, which matrix-FLOP counts do not see
NOTES = {
    ("activation", "gelu"): "erf instead of tanh (elementwise)",
    ("activation", "relu"): "cheaper elementwise",
    ("layernorm", "custom"): "fused layer-norm kernels and a per-row factor (2 more passes)",
    ("norm", "post"): "no final layer norm",
    ("positional", "none"): "no position add",
    ("positional", "sinusoidal"): "fixed table, no gradient",
    ("positional", "rotary"): "rotates q and k in every layer (elementwise)",
    ("positional", "alibi"): "score bias as a float mask: no flash kernel",
    ("norm", "parallel"): "one norm per block instead of two",
    ("qkv", "per_head_shared"): "hs→hs projections, shared by heads",
    ("mlp", "swiglu"): "gate × up and SiLU (elementwise)",
    ("mlp", "geglu"): "gate × up and erf GELU (elementwise)",
    ("mlp", "reglu"): "gate × up and ReLU (elementwise)",
    ("qk_norm", "rms"): "two RMSNorms per layer, on q and k (elementwise)",
}


def compose_config(*overrides: str) -> DictConfig:
    """The real root config with these overrides, as ``ablate-train`` composes it."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def build(cfg: DictConfig, tokenizer: dict[str, Any], device: torch.device) -> LitGPT:
    """The LightningModule ``ablate-train`` would build (seeded alike), its model on ``device``."""
    L.seed_everything(cfg.seed, verbose=False)
    module = LitGPT(**{k: OmegaConf.to_container(cfg[k], resolve=True) for k in ("model", "optim", "sample")},
                    tokenizer=tokenizer)
    module.model.to(device)
    return module


def make_optimizer(module: LitGPT) -> torch.optim.Optimizer:
    """The optimizer ``module.configure_optimizers`` makes (Lightning allows a bare one or a dict)."""
    opt = module.configure_optimizers()
    return opt["optimizer"] if isinstance(opt, dict) else opt


def optimizer_like(module: LitGPT, model: nn.Module) -> torch.optim.Optimizer:
    """The optimizer ``module.configure_optimizers`` makes (the same recipe builder and settings), over
    ``model``'s parameters."""
    return build_optimizer(model, module.hparams.optim, next(model.parameters()).device.type)


def ours_loss(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    return model(batch[:, :-1], batch[:, 1:])[1]


def hf_loss(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """The same loss as ours (cross-entropy on float logits over all T targets), on HF's logits."""
    logits = model(input_ids=batch[:, :-1], use_cache=False).logits
    return F.cross_entropy(logits.view(-1, logits.size(-1)).float(), batch[:, 1:].reshape(-1))


# -- timing ---------------------------------------------------------------------------------------------
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


# -- 1. ablate vs Hugging Face --------------------------------------------------------------------------
def bench_hf(b: Bench, module: LitGPT, batches: Sequence[torch.Tensor]) -> dict[str, Any]:
    """Our gpt2 preset against ``transformers.GPT2LMHeadModel``: same weights, batches, optimizer, precision.
    A third arm swaps HF's ``gelu_new`` (several tensor ops) for ``gelu_pytorch_tanh`` (one kernel)."""
    try:
        import transformers
    except ImportError:
        return {"status": "skipped: transformers is not installed"}
    from ablate.convert import load_gpt2_weights

    c = module.model.config

    def hf_model(activation: str) -> nn.Module:
        config = transformers.GPT2Config(
            vocab_size=c.vocab_size, n_positions=c.block_size, n_embd=c.n_embd, n_layer=c.n_layer, n_head=c.n_head,
            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, layer_norm_epsilon=1e-5, activation_function=activation,
            bos_token_id=0, eos_token_id=0,
        )
        return transformers.GPT2LMHeadModel(config).to(b.device).train()

    hf, hf_tanh = hf_model("gelu_new"), hf_model("gelu_pytorch_tanh")
    hf_tanh.load_state_dict(hf.state_dict())
    ours = load_gpt2_weights(copy.deepcopy(module.model), hf.state_dict()).train()
    with torch.no_grad(), b.autocast(b.amp):
        loss_diff = abs(ours_loss(ours, batches[0]).item() - hf_loss(hf, batches[0]).item())
    times = b.paired({
        "ablate": b.step_fn(ours, optimizer_like(module, ours)),
        "hf": b.step_fn(hf, optimizer_like(module, hf), hf_loss),
        "hf_gelu_pytorch_tanh": b.step_fn(hf_tanh, optimizer_like(module, hf_tanh), hf_loss),
    }, batches)
    return {
        "status": "ok", "attn_implementation": hf.config._attn_implementation, "loss_diff_same_weights": loss_diff,
        **{name: per_step(t, batches[0]) for name, t in times.items()},
        "ratio_hf_over_ours": times["hf"] / times["ablate"],
        "ratio_hf_gelu_pytorch_tanh_over_ours": times["hf_gelu_pytorch_tanh"] / times["ablate"],
    }


# -- 2. Lightning overhead ------------------------------------------------------------------------------
class _EvalTimer(L.Callback):
    """Adds the time of each evaluation inside ``fit`` to ``timings["periodic_eval_s"]``."""

    def __init__(self, timings: dict[str, float]) -> None:
        self.timings, self.start = timings, 0.0

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        torch.cuda.synchronize() if torch.cuda.is_available() else None
        self.start = time.perf_counter()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        torch.cuda.synchronize() if torch.cuda.is_available() else None
        if trainer.state.fn == "fit":
            self.timings["periodic_eval_s"] += time.perf_counter() - self.start


class TimedTrainer(L.Trainer):
    """``lightning.Trainer`` that also times ``fit``, ``validate`` and each evaluation inside ``fit``.
    The benchmark selects it with ``trainer._target_``; it changes nothing else in ``ablate.train.run``."""

    last: ClassVar[TimedTrainer | None] = None

    def __init__(self, *args: Any, callbacks: list[L.Callback] | None = None, **kwargs: Any) -> None:
        self.timings = {"fit_s": 0.0, "periodic_eval_s": 0.0, "validate_s": 0.0}
        super().__init__(*args, callbacks=[*(callbacks or []), _EvalTimer(self.timings)], **kwargs)
        TimedTrainer.last = self

    def _timed(self, key: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            self.timings[key] += time.perf_counter() - start

    def fit(self, *args: Any, **kwargs: Any) -> None:
        self._timed("fit_s", super().fit, *args, **kwargs)

    def validate(self, *args: Any, **kwargs: Any) -> Any:
        return self._timed("validate_s", super().validate, *args, **kwargs)


def plain_run(b: Bench, cfg: DictConfig) -> dict[str, float]:
    """What ``ablate.train.run`` computes, as a plain PyTorch loop: the same data module, LitGPT's model,
    optimizer, LR schedule and diagnostics, gradient clipping, periodic evaluations (with attention entropy
    and a text sample) and the final whole-split evaluation. No logging, progress bar, wandb or checkpoints."""
    start = time.perf_counter()
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    data = make_datamodule(OmegaConf.to_container(cfg.data, resolve=True), seed=cfg.seed)
    data.setup()
    module = build(cfg, data.tokenizer.state(), b.device)
    model, tr = module.model, cfg.trainer
    optimizer = make_optimizer(module)

    def evaluate(loader: Any, fitting: bool) -> float:  # LitGPT's validation_step and on_validation_epoch_end
        t0 = time.perf_counter()
        model.eval()
        with torch.inference_mode(), b.autocast(b.amp):
            sums = []
            for i, batch in enumerate(loader):
                x, y = batch[:, :-1].to(b.device), batch[:, 1:].to(b.device)
                _, loss = model(x, y)
                sums.append(torch.stack([loss * y.numel(), loss.new_tensor(y.numel())]))
                if i == 0 and fitting:
                    model.attention_entropy(x[:4])
            total = torch.stack(sums).sum(0)
            (total[0] / total[1]).item()
            if fitting:
                s = cfg.sample
                prompt = torch.tensor([module.tokenizer.encode(s.prompt)], dtype=torch.long, device=b.device)
                generator = torch.Generator(device=b.device).manual_seed(0)
                model.generate(prompt, s.max_new_tokens, s.temperature, s.top_k, generator)
        model.train()
        b.sync()
        return time.perf_counter() - t0

    setup_s, eval_s = time.perf_counter() - start, 0.0
    model.train()
    for step, batch in zip(range(tr.max_steps), data.train_dataloader()):
        for group in optimizer.param_groups:  # LitGPT's schedule: a function of the step
            group["lr"] = lr_at(step, module.hparams.optim)
        batch = batch.to(b.device)
        with b.autocast(b.amp):
            loss = ours_loss(model, batch)
        loss.backward()
        if step % tr.log_every_n_steps == 0:  # LitGPT's divergence check and per-layer gradient norms
            loss.item()
            for block in model.transformer.h:
                torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in block.parameters()]))
        torch.nn.utils.clip_grad_norm_(model.parameters(), tr.gradient_clip_val)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if (step + 1) % tr.val_check_interval == 0:
            eval_s += evaluate(data.val_dataloader(), fitting=True)
    b.sync()
    train_s = time.perf_counter() - start - setup_s - eval_s
    final_s = evaluate(data.full_val_dataloader(), fitting=False)
    return {"total_s": time.perf_counter() - start, "setup_teardown_s": setup_s, "train_s": train_s,
            "periodic_eval_s": eval_s, "final_eval_s": final_s}


def lightning_run(cfg: DictConfig) -> dict[str, float]:
    """A whole real ``ablate.train.run``: its wall time with nothing subtracted, and its parts."""
    from ablate.train import run

    with tempfile.TemporaryDirectory(prefix="ablate-bench-") as out_dir:
        start = time.perf_counter()
        summary = run(cfg, out_dir)
        total = time.perf_counter() - start
    if summary.get("status") != "completed":
        raise RuntimeError(f"ablate.train.run ended {summary.get('status')}: {summary.get('error')}")
    t = TimedTrainer.last.timings  # type: ignore[union-attr]
    return {"total_s": total, "setup_teardown_s": total - t["fit_s"] - t["validate_s"],
            "train_s": t["fit_s"] - t["periodic_eval_s"], "periodic_eval_s": t["periodic_eval_s"],
            "final_eval_s": t["validate_s"]}


def bench_lightning(b: Bench, overrides: Sequence[str], run_steps: int, repeats: int) -> dict[str, Any]:
    """A plain loop against ``ablate.train.run``, with the default periodic evaluation and without it."""
    every = min(compose_config(*overrides).trainer.val_check_interval, run_steps)  # the default, at least once
    common = [*overrides, "logger.mode=offline", f"threads={torch.get_num_threads()}",
              f"trainer._target_={TimedTrainer.__module__}.TimedTrainer"]
    warm = compose_config(*common, f"trainer.max_steps={min(run_steps, 2)}", "trainer.val_check_interval=1")
    plain_run(b, warm), lightning_run(warm)  # untimed: one-time costs (lazy imports, first wandb run)
    result: dict[str, Any] = {"run_steps": run_steps, "repeats": repeats, "val_check_interval": every}
    for mode, interval in (("with_eval", every), ("no_periodic_eval", run_steps + 1)):
        cfg = compose_config(*common, f"trainer.max_steps={run_steps}", f"trainer.val_check_interval={interval}")
        runs: dict[str, list[dict[str, float]]] = {"plain": [], "lightning": []}
        for _ in range(repeats):  # A B A B
            runs["plain"].append(plain_run(b, cfg))
            runs["lightning"].append(lightning_run(cfg))
        med = {side: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for side, rs in runs.items()}
        result[mode] = {**med, "ratio_total": med["lightning"]["total_s"] / med["plain"]["total_s"],
                        "ratio_train": med["lightning"]["train_s"] / med["plain"]["train_s"]}
    return result


# -- 4. every variant of every slot ---------------------------------------------------------------------
def bench_variants(b: Bench, overrides: Sequence[str], base: LitGPT, batches: Sequence[torch.Tensor]) -> list[dict]:
    """Each registered variant swapped alone into the gpt2 preset, alternating with the preset step by step."""

    def profile(module: LitGPT) -> tuple[Step, dict[str, Any]]:
        model = module.model.train()
        optimizer = optimizer_like(module, model)
        step = b.step_fn(model, optimizer)
        step(batches[0])  # AdamW's state exists before memory is measured
        return step, {**b.footprint(model, optimizer, step, batches[0]),
                      "formula_flops_per_token": module.flops_per_token}

    tokenizer = base.tokenizer.state()
    base_step, base_row = profile(build(compose_config(*overrides), tokenizer, b.device))
    choices, rows, base_times = base.model.config.choices(), [], []
    for slot in SLOTS.values():
        for name in slot.names():
            row = {"slot": slot.name, "variant": name, "baseline": name == choices[slot.name],
                   "note": NOTES.get((slot.name, name), "")}
            if row["baseline"]:
                rows.append({**row, **base_row})
                continue
            cfg = compose_config(*overrides, f"model/{slot.name}={name}")
            step, measured = profile(build(cfg, tokenizer, b.device))
            times = b.paired({"gpt2": base_step, "variant": step}, batches)
            base_times.append(times["gpt2"])
            rows.append({**row, **measured, **per_step(times["variant"], batches[0]),
                         "gpt2_tokens_per_s": per_step(times["gpt2"], batches[0])["tokens_per_s"],
                         "ratio_tokens_per_s": times["gpt2"] / times["variant"]})
    for row in rows:
        if row["baseline"]:  # its speed: the median over all its pairs
            row.update(per_step(statistics.median(base_times), batches[0]), ratio_tokens_per_s=1.0)
        for key in ("memory_bytes", "matrix_flops_per_token", "formula_flops_per_token"):
            row[f"ratio_{key.removesuffix('_per_token')}"] = row[key] / base_row[key]
        # over 10% slower without more matrix arithmetic: the implementation, not the maths, costs it
        row["suspect"] = row["ratio_tokens_per_s"] < 0.9 and row["ratio_matrix_flops"] <= 1.0
    return rows


# -- 5. FLOPs, 6. compile, 7. bf16 ----------------------------------------------------------------------
def bench_flops(module: LitGPT, tokens_per_s: float, peak: float | None, rate: float) -> dict[str, Any]:
    """Model FLOP/s by LitGPT's formula, against the card's peak (MFU) and this machine's matmul rate."""
    flops = module.flops_per_token * tokens_per_s
    return {"flops_per_token": module.flops_per_token, "tokens_per_s": tokens_per_s, "flops_per_s": flops,
            "peak_flops": peak, "mfu": flops / peak if peak else None, "fraction_of_matmul_rate": flops / rate}


def bench_compile(b: Bench, module: LitGPT, batches: Sequence[torch.Tensor]) -> dict[str, Any]:
    """``model.compile()`` (the model, not the LightningModule) against eager, same weights; the first
    compiled step, which compiles, is timed apart. A failure is reported, and the benchmark goes on."""
    eager, compiled = copy.deepcopy(module.model), copy.deepcopy(module.model)
    compiled.compile()
    step = b.step_fn(compiled, optimizer_like(module, compiled))
    try:
        start = time.perf_counter()
        step(batches[0])
        b.sync()
        compile_s = time.perf_counter() - start
        times = b.paired({"eager": b.step_fn(eager, optimizer_like(module, eager)), "compiled": step}, batches)
    except Exception as e:  # compile support varies by platform and version
        return {"status": f"failed: {type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:300]}"}
    return {"status": "ok", "compile_s": compile_s, **{k: per_step(t, batches[0]) for k, t in times.items()},
            "ratio_speedup": times["eager"] / times["compiled"]}


def bench_bf16(b: Bench, module: LitGPT, batches: Sequence[torch.Tensor]) -> dict[str, Any]:
    """fp32 against ``torch.autocast(device, dtype=torch.bfloat16)``, same weights."""
    fp32, bf16 = copy.deepcopy(module.model), copy.deepcopy(module.model)
    times = b.paired({"fp32": b.step_fn(fp32, optimizer_like(module, fp32), amp=None),
                           "bf16": b.step_fn(bf16, optimizer_like(module, bf16), amp=torch.bfloat16)}, batches)
    return {"status": "ok", **{k: per_step(t, batches[0]) for k, t in times.items()},
            "ratio_speedup": times["fp32"] / times["bf16"]}


# -- the run --------------------------------------------------------------------------------------------
def environment(device: torch.device) -> dict[str, Any]:
    """The machine and the versions the numbers belong to."""
    from ablate.train import _version

    try:
        cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
        cpu = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor() or "unknown"
    try:
        import transformers

        hf = transformers.__version__
    except ImportError:
        hf = "not installed"
    return {
        "machine": {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None},
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "lightning": L.__version__,
                     "transformers": hf, "ablate": _version()},
    }


def bench_size(b: Bench, name: str, args: argparse.Namespace, rates: dict[str, float]) -> dict[str, Any]:
    """Every measurement at one size, on the batches ``ablate-train`` would draw."""
    overrides = [*SIZES[name].overrides, *DEVICE_OVERRIDES[b.device.type]]
    overrides += [f"data.batch_size={args.batch_size}"] if args.batch_size else []
    cfg = compose_config(*overrides)
    data = make_datamodule(OmegaConf.to_container(cfg.data, resolve=True), seed=cfg.seed)
    data.setup()
    module = build(cfg, data.tokenizer.state(), b.device)
    # moved to the device up front: a timed step is forward, loss, backward, optimizer step, zero_grad
    batches = [x.to(b.device) for x in itertools.islice(data.train_dataloader(), b.warmup + b.steps)]
    c = module.model.config
    out: dict[str, Any] = {
        "sizes": {"n_layer": c.n_layer, "n_head": c.n_head, "n_embd": c.n_embd, "block_size": c.block_size,
                  "batch_size": data.batch_size, "vocab_size": c.vocab_size, "n_params": module.model.num_params()},
        "precision": cfg.trainer.precision, "overrides": overrides,
    }
    sections: dict[str, Callable[[], Any]] = {
        "hf": lambda: bench_hf(b, module, batches),
        "variants": lambda: bench_variants(b, overrides, module, batches),
        "bf16": lambda: bench_bf16(b, module, batches),
        "lightning": lambda: bench_lightning(b, overrides, args.run_steps or SIZES[name].run_steps,
                                             args.repeats or SIZES[name].repeats),
        "compile": lambda: bench_compile(b, module, batches),
    }
    for key, fn in sections.items():
        if (key == "bf16" and b.device.type != "cpu") or (key == "compile" and not args.compile):
            continue  # bf16: a GPU already trains in bf16
        print(f"[ablate-bench] {name}: {key} ...", file=sys.stderr, flush=True)
        out[key] = fn()
    base = next(row for row in out["variants"] if row["baseline"])
    rate = rates["fp32" if b.amp is None else "bf16"]
    out["flops"] = bench_flops(module, base["tokens_per_s"], args.peak_flops, rate)
    if "bf16" in out:
        out["flops"]["bf16_fraction_of_bf16_matmul_rate"] = (
            module.flops_per_token * out["bf16"]["bf16"]["tokens_per_s"] / rates["bf16"])
    return out


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = ArgumentParser(prog="ablate-bench", description=__doc__.split("\n\n")[1])
    p.add_argument("--size", help=f"comma-separated, of: {', '.join(SIZES)} (default: cpu-small,cpu-large on a "
                                  f"CPU, gpt2-small on a GPU)")
    p.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available")
    p.add_argument("--steps", type=int, default=20, help="timed steps per arm of each paired comparison")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per arm before timing")
    p.add_argument("--run-steps", type=int, help="steps of each whole training run (Lightning overhead)")
    p.add_argument("--repeats", type=int, help="plain/Lightning run pairs per mode (median; default: per size)")
    p.add_argument("--threads", type=int, help="torch threads (default: PyTorch's)")
    p.add_argument("--batch-size", type=int, help="override the size's batch size")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, help="time torch.compile (default: on)")
    p.add_argument("--peak-flops", type=float, help="the GPU's bf16 dense peak in FLOP/s, for MFU")
    p.add_argument("--quick", action="store_true", help="a tiny size, 3 steps each, no compile unless asked (tests)")
    p.add_argument("--out", default="reports/benchmarks", help="folder for <device>.md and <device>.json")
    args = p.parse_args(argv)
    if args.repeats is not None and args.repeats < 1:
        p.error(f"--repeats {args.repeats}: must be at least 1 (pairs of whole runs per mode)")
    if args.quick:
        args.size, args.steps, args.warmup = "quick", 3, 1
    args.compile = not args.quick if args.compile is None else args.compile
    args.device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.device.type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is available; use --device cpu")
    args.size = (args.size or ("gpt2-small" if args.device.type == "cuda" else "cpu-small,cpu-large")).split(",")
    for name in args.size:
        if name not in SIZES:
            p.error(f"--size {name!r} is unknown; choose from: {', '.join(SIZES)}")
    if args.device.type == "cuda" and args.peak_flops is None:
        args.peak_flops = peak_bf16(torch.cuda.get_device_name(args.device))
    return args


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


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point: measure everything, then write ``<out>/<device>.md`` and ``.json``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    load, others = os.getloadavg()[0], others_cpu_use()
    try:
        import_user_modules()  # variants registered by the user are benchmarked too
    except AblateError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")  # as ablate.train.run does
    n, probe = 256 if args.quick else 2048, Bench(device, None, 0, 0)
    rates = {"fp32": probe.matmul_rate(n, torch.float32), "bf16": probe.matmul_rate(n, torch.bfloat16)}
    report: dict[str, Any] = {
        "command": " ".join(["ablate-bench", *argv]), "device": device.type, **environment(device),
        "load_avg_1min_start": load, "others_cpu_use_start": others, "warnings": [],
        "steps": args.steps, "warmup": args.warmup, "matmul_flops_per_s": {**rates, "n": n}, "sizes": {},
    }
    busy_start = others > 0.2 if others is not None else load > 0.5  # the load average only without /proc/stat
    if busy_start:
        busy = f"other processes used {others:.2f} CPUs" if others is not None else f"the load average was {load:.2f}"
        report["warnings"].append(f"{busy} at start: another process was busy, so these timings are not to be "
                                  f"trusted; rerun on a quiet machine")
    for name in args.size:
        # the size's training precision: bf16-mixed on GPUs (DEVICE_OVERRIDES), fp32 on CPUs
        b = Bench(device, torch.bfloat16 if device.type == "cuda" else None, args.steps, args.warmup)
        report["sizes"][name] = bench_size(b, name, args, rates)
    out = Path(args.out)
    atomic_write_json(out / f"{device.type}.json", report)
    atomic_write_text(out / f"{device.type}.md", markdown(report))
    print(f"[ablate-bench] wrote {out / device.type}.md and .json", file=sys.stderr)


# -- the report -----------------------------------------------------------------------------------------
def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    return [*lines, *("| " + " | ".join(str(cell) for cell in row) + " |" for row in rows), ""]


def _gflops(flops_per_s: float) -> str:
    return f"{flops_per_s / 1e9:,.0f}" if flops_per_s >= 1e10 else f"{flops_per_s / 1e9:.2g}"


def _x(ratio: float) -> str:
    return f"{ratio:.2f}×"


def _size_markdown(name: str, s: dict[str, Any], device: str) -> list[str]:
    z, hf, lt, f = s["sizes"], s["hf"], s["lightning"], s["flops"]
    lines = [f"## {name}: {z['n_layer']} layers, {z['n_head']} heads, {z['n_embd']} dims, block {z['block_size']}, "
             f"batch {z['batch_size']} (vocab {z['vocab_size']}, {z['n_params'] / 1e6:.2f}M parameters, "
             f"{s['precision']})", "", "### ablate vs Hugging Face: one training step", ""]
    if hf["status"] != "ok":
        lines += [hf["status"], ""]
    else:
        lines += [f"Same weights (losses differ by {hf['loss_diff_same_weights']:.1e}), same batches, dropout 0, "
                  f"`model.train()`, {s['precision']}, the same torch AdamW (ablate's settings and decay groups). "
                  f"Hugging Face uses its default attention (`{hf['attn_implementation']}`) and `use_cache=False`; "
                  f"both losses are `F.cross_entropy` on float logits. A step: forward, loss, backward, AdamW step, "
                  f"zero_grad.", ""]
        lines += _table(["model", "ms/step", "tokens/s", "time vs ablate"], [
            [label, f"{hf[k]['ms_per_step']:.1f}", f"{hf[k]['tokens_per_s']:,.0f}", _x(hf[k]["ms_per_step"] /
                                                                                      hf["ablate"]["ms_per_step"])]
            for k, label in (("ablate", "ablate `gpt2`"), ("hf", "transformers `GPT2LMHeadModel` (`gelu_new`)"),
                             ("hf_gelu_pytorch_tanh", "the same, `activation_function=gelu_pytorch_tanh`"))])
    w, n = lt["with_eval"], lt["no_periodic_eval"]
    lines += [
        "### Lightning overhead: whole training runs", "",
        f"`ablate.train.run` (Lightning Trainer, wandb offline, progress bar, metrics, checkpoints, evaluations) "
        f"against a plain PyTorch loop doing the same computation (same data module, model, AdamW, LR schedule, "
        f"clipping, LitGPT's diagnostics and evaluations; nothing logged or saved). {lt['run_steps']} steps, median "
        f"of {lt['repeats']} pair(s) run alternately after an untimed warm-up pair; totals subtract nothing. With "
        f"evaluation: every {lt['val_check_interval']} steps on `data.eval_batches` fixed batches plus a text sample, "
        f"then the whole validation split. Without: periodic evaluation set beyond `max_steps`; the final "
        f"whole-split evaluation still runs, listed apart. Lightning's parts are timed by a `Trainer` subclass.", "",
    ]
    parts = [("setup_teardown_s", "set-up and teardown"), ("train_s", "training (Lightning: `fit` less evaluations)"),
             ("periodic_eval_s", "periodic evaluation"), ("final_eval_s", "final whole-split evaluation")]
    rows = []
    for label, m in (("with evaluation", w), ("without periodic evaluation", n)):
        rows.append([f"**{label}: whole run**", f"{m['plain']['total_s']:.2f}", f"{m['lightning']['total_s']:.2f}",
                     f"**{_x(m['ratio_total'])}**"])
        rows += [[f"&nbsp; {lab}", f"{m['plain'][k]:.2f}", f"{m['lightning'][k]:.2f}",
                  _x(m["ratio_train"]) if k == "train_s" else ""] for k, lab in parts]
    lines += _table(["", "plain loop (s)", "`ablate.train.run` (s)", "ratio"], rows)
    lines += ["Target: ≤ 1.05× (5% overhead).", "", "### Every variant of every slot, alone in `gpt2`", "",
              "Each variant alternates step by step with the `gpt2` preset. Memory: " + (
                  "weights and AdamW state plus `torch.cuda.max_memory_allocated`'s rise during one step. "
                  if device == "cuda" else
                  "estimated from tensors: weights, gradients, AdamW state and the activations autograd saves for "
                  "backward (`saved_tensors_hooks`, distinct storages); transient buffers are not counted. ")
              + "Matrix FLOPs: forward and backward counted by `torch.utils.flop_counter`"
              + ("" if device == "cuda" else " (without attention, which it cannot count on CPUs)")
              + "; elementwise work is in the notes. ⚠: over 10% slower without more matrix FLOPs.", ""]
    lines += _table(
        ["slot", "variant", "tokens/s", "gpt2 tokens/s (paired)", "speed vs gpt2", "memory (MiB)", "vs gpt2",
         "matrix FLOPs vs gpt2", "note"],
        [[r["slot"], f"**{r['variant']}** (gpt2)" if r["baseline"] else r["variant"],
          f"{r['tokens_per_s']:,.0f}", f"{r['gpt2_tokens_per_s']:,.0f}" if "gpt2_tokens_per_s" in r else "",
          _x(r["ratio_tokens_per_s"]) + (" ⚠" if r["suspect"] else ""), f"{r['memory_bytes'] / 2**20:.1f}",
          _x(r["ratio_memory_bytes"]), _x(r["ratio_matrix_flops"]), r["note"]] for r in s["variants"]])
    lines += ["### FLOPs", "",
              f"`LitGPT.flops_per_token` (forward + backward, counted by PyTorch's FLOP counter on a meta copy of the "
              f"model, attention included) = {f['flops_per_token'] / 1e6:.2f} MFLOPs × "
              f"{f['tokens_per_s']:,.0f} tokens/s (the `gpt2` rows) = {f['flops_per_s'] / 1e9:,.1f} GFLOP/s: "
              f"{100 * f['fraction_of_matmul_rate']:.1f}% of the measured {'bf16' if device == 'cuda' else 'fp32'} "
              f"matrix-product rate"
              + (f", MFU {100 * f['mfu']:.1f}% of {f['peak_flops'] / 1e12:.0f} TFLOP/s (bf16 dense peak)" if f["mfu"]
                 else ", MFU unknown for this card (pass `--peak-flops`)" if device == "cuda" else "")
              + (f"; in bf16 autocast {100 * f['bf16_fraction_of_bf16_matmul_rate']:.1f}% of the bf16 rate"
                 if "bf16_fraction_of_bf16_matmul_rate" in f else "") + ".", ""]
    for key, title, (a, b) in (("bf16", "bf16 autocast on the CPU", ("fp32", "bf16")),
                               ("compile", "`model.compile()` (the model, not the LightningModule)",
                                ("eager", "compiled"))):
        if key in s:
            r = s[key]
            lines += [f"### {title}", "", r["status"] if r["status"] != "ok" else
                      f"`gpt2`, same weights, alternating: {a} {r[a]['ms_per_step']:.1f} ms/step, {b} "
                      f"{r[b]['ms_per_step']:.1f} ms/step: speed-up **{_x(r['ratio_speedup'])}**"
                      + (f"; compiling (the first step) took {r['compile_s']:.1f} s." if key == "compile" else "."), ""]
    return lines


def markdown(report: dict[str, Any]) -> str:
    m, v, mm = report["machine"], report["versions"], report["matmul_flops_per_s"]
    lines = [f"# ablate benchmark: {report['device']}", "", *(f"> **Warning:** {w}\n" for w in report["warnings"]),
             f"- Command: `{report['command']}`",
             f"- Machine: {m['cpu']}, {m['cores']} cores, {m['torch_threads']} torch threads, "
             f"GPU: {m['gpu'] or 'none'}",
             "- Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
             f"- At start: 1-minute load average {report['load_avg_1min_start']:.2f} (this process's start-up "
             f"included); other processes' CPU use over 2 s " + (f"{report['others_cpu_use_start']:.2f} CPUs"
             if report.get("others_cpu_use_start") is not None else "not measured (no /proc/stat)"),
             f"- Timing: median of {report['steps']} steps per arm after {report['warmup']} warm-up step(s) per arm; "
             f"the arms of a comparison alternate step by step (A B A B ...), all in one process.",
             f"- Matrix product {mm['n']}×{mm['n']}, best of 5: fp32 {_gflops(mm['fp32'])} GFLOP/s, "
             f"bf16 {_gflops(mm['bf16'])} GFLOP/s"
             + (" (bf16 emulated: this CPU has no native bf16 matrix units)" if mm["bf16"] < mm["fp32"] / 4 else ""),
             ""]
    for name, s in report["sizes"].items():
        lines += _size_markdown(name, s, report["device"])
    return "\n".join(lines)


if __name__ == "__main__":
    main()

"""The LightningModule: receives plain configs, builds the model itself, so ``load_from_checkpoint``
rebuilds any variant from the hyperparameters saved in the checkpoint."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.throughput import measure_flops
from lightning.pytorch.callbacks import RichProgressBar, ThroughputMonitor
from lightning.pytorch.trainer.states import RunningStage, TrainerFn
from lightning.pytorch.utilities import rank_zero_only

from ablate.checkpoints import check_compatible, load_checkpoint
from ablate.clock import phase_done
from ablate.convert import load_gpt2_weights, load_state_dict_file
from ablate.gpu import runtime
from ablate.model import GPT, GPTConfig
from ablate.recipe import build_optimizer, lr_at
from ablate.records import RunRecord
from ablate.tokenizers import tokenizer_from_state


def training_flops_per_token(config: GPTConfig) -> float:
    """FLOPs of one training step (forward and backward) per token at full context, counted by PyTorch's
    FLOP counter on a meta-device copy of the model: exact for every variant, at no compute cost."""
    with torch.device("meta"):
        model = GPT(config)
        idx = torch.zeros(1, config.block_size, dtype=torch.long)
    return measure_flops(model, lambda: model(idx)[0], loss_fn=torch.Tensor.sum) / config.block_size


def sample_due(step: int, every: int | None, interval: int, max_steps: int) -> bool:
    """Whether the evaluation after training step ``step`` (one every ``interval`` steps) writes a text sample: the
    first at or after every ``every`` steps does, and the last of training; all do when ``every`` is None. A
    function of the step alone, so a resumed run samples where an uninterrupted one would."""
    if every is None:
        return True
    last = step + interval > max_steps  # no evaluation after this one while training
    return last or step // every > (step - interval) // every  # a multiple of every in (step - interval, step]


class TrainingThroughput(ThroughputMonitor):
    """Lightning's ThroughputMonitor (tokens/s, FLOP/s, MFU), for training alone. The parent also times each
    evaluation batch and logs it at the evaluation's running batch count as if that were a training step
    (rows at steps 10, 20, ... of metrics.csv, and in wandb's ``trainer/global_step``); here an evaluation
    only pauses the training clock, so training throughput excludes it as before."""

    def __init__(self) -> None:
        super().__init__(batch_size_fn=lambda b: b.size(0), length_fn=lambda b: b.size(0) * (b.size(1) - 1))
        self._paused_at = 0.0

    @rank_zero_only
    def on_validation_start(self, trainer: L.Trainer, *_: Any) -> None:
        self._paused_at = time.perf_counter()

    def on_validation_batch_end(self, *_: Any, **__: Any) -> None:
        pass

    @rank_zero_only
    def on_validation_end(self, trainer: L.Trainer, *_: Any) -> None:
        if trainer.state.fn == TrainerFn.FITTING and RunningStage.TRAINING in self._t0s:
            self._t0s[RunningStage.TRAINING] += time.perf_counter() - self._paused_at


class RichBar(RichProgressBar):
    """Lightning's RichProgressBar, redrawn ``refresh_rate`` times a second from its thread (Lightning's default of
    100 would redraw once a step; a redraw holds the GIL ~2 ms on a slow CPU). Lightning's thread sleeps
    ``1 / refresh_rate`` s between redraws and its ``stop`` joins it, so every stop (end of ``fit``, of each
    ``validate``) would wait up to that long; here the thread is told to end and left to finish its sleep."""

    def __init__(self, refresh_rate: float = 4) -> None:
        super().__init__(refresh_rate=refresh_rate)  # type: ignore[arg-type]  # per second: any positive number

    def _stop_progress(self) -> None:
        live = getattr(self.progress, "live", None)
        if live is not None and live._refresh_thread is not None:
            live._refresh_thread.stop()  # sets its done event: the thread exits when its current sleep ends
            live._refresh_thread = None
        super()._stop_progress()


class LitGPT(L.LightningModule):
    def __init__(
        self,
        model: dict[str, Any],
        optim: dict[str, Any],
        tokenizer: dict[str, Any],
        sample: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.tokenizer = tokenizer_from_state(tokenizer)
        self.model = GPT(GPTConfig.from_dict(model, vocab_size=self.tokenizer.vocab_size))
        if model.get("init_from"):
            self._init_from(Path(model["init_from"]).expanduser())
        if model.get("compile"):
            self.model.compile()  # compiles forward in place; parameter names stay as they are
        self.flops_per_token = training_flops_per_token(self.model.config)  # TrainingThroughput reads it
        self.best_val_loss = math.inf
        self.diverged: str | None = None  # why the run stopped early, if it diverged
        self._first_batch = True
        self._val_sum: list[torch.Tensor] = []

    def _init_from(self, path: Path) -> None:
        """Start from saved weights: an ablate checkpoint (``.ckpt``) or a GPT-2 state dict."""
        if path.suffix != ".ckpt":
            load_gpt2_weights(self.model, load_state_dict_file(path))
            return
        checkpoint = load_checkpoint(path)
        check_compatible(checkpoint, path, self.hparams.model, self.hparams.tokenizer)
        self.model.load_state_dict({k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items()})

    @property
    def flops_per_batch(self) -> int:
        return self.flops_per_token * self.trainer.datamodule.batch_size * self.model.config.block_size

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.model(idx)[0]

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        x, y = batch[:, :-1], batch[:, 1:]  # (B, T) each
        _, loss = self.model(x, y)
        # Lightning passes step values to the loggers only every log_every_n_steps; logging on the other
        # steps would cost time on every step for values that are dropped (as its ThroughputMonitor does).
        if self.trainer._logger_connector.should_update_logs:
            self.log("train/loss", loss, prog_bar=True)
            self.log("train/lr", self.optimizers().param_groups[0]["lr"])
        return loss

    def _diagnostics_due(self) -> bool:
        return self.global_step % self.trainer.log_every_n_steps == 0

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        # Checked when Lightning logs anyway (reading the loss costs a device sync): a NaN never recovers.
        if not self._diagnostics_due():
            return
        loss = outputs["loss"].item()
        limit = self.hparams.optim.get("max_loss", math.inf)
        if not math.isfinite(loss) or loss > limit:
            self._diverge(f"training loss {loss:.4g} at step {self.global_step} (limit optim.max_loss={limit})")

    def _diverge(self, why: str) -> None:
        self.diverged = self.diverged or why
        self.trainer.should_stop = True

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Gradient norm of each block (before clipping): where training signal is lost or explodes."""
        if not self._diagnostics_due():
            return
        for i, block in enumerate(self.model.transformer.h):
            grads = [p.grad for p in block.parameters() if p.grad is not None]
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
            self.log(f"diag/grad_norm/layer_{i}", norm)

    # -- validation: a token-weighted mean over the split, reduced across processes ------------------
    def on_validation_epoch_start(self) -> None:
        self._val_sum = []

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        x, y = batch[:, :-1], batch[:, 1:]
        # the end of a run evaluates the whole split: its last, shorter batch runs eagerly rather than compile
        # a graph for one batch
        full = x.shape[0] == self.trainer.datamodule.batch_size
        _, loss = (self.model if full else self.model.forward)(x, y)
        self._val_sum.append(torch.stack([loss.detach() * y.numel(), loss.new_tensor(y.numel())]))
        if batch_idx == 0 and self.trainer.state.fn == "fit":
            for i, entropy in enumerate(self.model.attention_entropy(x[:4])):
                self.log(f"diag/attn_entropy/layer_{i}", entropy)

    def on_validation_epoch_end(self) -> None:
        total = self.trainer.strategy.reduce(torch.stack(self._val_sum).sum(0), reduce_op="sum")
        loss = (total[0] / total[1]).item()
        fitting = self.trainer.state.fn == "fit"
        prefix = "val" if fitting else "final"
        metrics = {f"{prefix}/loss": loss, f"{prefix}/ppl": math.exp(min(loss, 50.0))}
        if self.tokenizer.kind == "char":
            metrics[f"{prefix}/bpc"] = loss / math.log(2)  # bits per character
        if fitting:
            self.best_val_loss = min(self.best_val_loss, loss)
            metrics["val/loss_best"] = self.best_val_loss
        self.log_dict(metrics, prog_bar=fitting, sync_dist=True)  # already reduced: identical on every rank
        if fitting and not math.isfinite(loss):
            self._diverge(f"validation loss {loss} at step {self.global_step}")
        elif fitting and self.hparams.sample and sample_due(
            self.global_step, self.hparams.sample.get("every"), self.trainer.val_check_interval, self.trainer.max_steps
        ):
            self._log_sample()

    def _log_sample(self) -> None:
        cfg = self.hparams.sample
        prompt = torch.tensor([self.tokenizer.encode(cfg["prompt"])], dtype=torch.long, device=self.device)
        generator = torch.Generator(device=self.device).manual_seed(0)  # same draw at every eval: comparable
        out = self.model.generate(prompt, cfg["max_new_tokens"], cfg["temperature"], cfg["top_k"], generator)
        text = self.tokenizer.decode(out[0].tolist())
        for logger in self.loggers:
            if hasattr(logger, "log_text"):
                logger.log_text(key="samples", columns=["step", "text"], data=[[self.global_step, text]])

    # -- exact resume: what Lightning's checkpoint does not already hold ------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # dropout masks come from the global RNG; restoring it makes a resumed run bit-for-bit the same
        checkpoint["ablate"] = {"best_val_loss": self.best_val_loss, "torch_rng": torch.get_rng_state()}
        if torch.cuda.is_available():
            checkpoint["ablate"]["cuda_rng"] = torch.cuda.get_rng_state_all()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("ablate", {})
        self.best_val_loss = state.get("best_val_loss", math.inf)
        if "torch_rng" in state:
            torch.set_rng_state(state["torch_rng"])
        if "cuda_rng" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])

    def on_train_start(self) -> None:
        """State what this run computes with (the GPU defaults: precision, TF32, fused AdamW, compile, SDPA,
        vocabulary padding) in its record (``summary.json``'s ``runtime``) and its wandb config."""
        phase_done("trainer_setup")
        optimizer = self.trainer.optimizers[0] if self.trainer.optimizers else None
        state = runtime(self.device, self.trainer.precision, optimizer, self.model)
        for logger in self.loggers:
            if isinstance(logger, RunRecord):
                logger.summary["runtime"] = state
            else:
                logger.log_hyperparams({"runtime": state})

    # -- optimisation ---------------------------------------------------------------------------------
    def configure_optimizers(self) -> torch.optim.Optimizer:
        return build_optimizer(self.model, self.hparams.optim, self.device.type)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # The learning rate is a function of the global step alone (as in nanoGPT), not a scheduler's
        # own counter: a run resumed from any checkpoint continues the schedule exactly.
        lr = lr_at(self.global_step, self.hparams.optim)
        for group in self.optimizers().param_groups:
            group["lr"] = lr
        if self._first_batch:
            # Lightning restores its logging counter one ahead when resuming from a mid-epoch checkpoint,
            # which would shift every logged step after a resume; with no gradient accumulation it equals
            # the global step before each batch.
            self.trainer.fit_loop.epoch_loop._batches_that_stepped = self.global_step
            self._first_batch = False

"""2. Lightning's overhead: a whole ``ablate.train.run`` against a plain PyTorch loop that computes the same."""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from ablate.bench.harness import Bench
from ablate.bench.models import build, compose_config, make_optimizer, ours_loss
from ablate.data import make_datamodule
from ablate.lit import LitGPT, sample_due
from ablate.recipe import lr_at


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


def plain_optimizer_and_schedule(module: LitGPT) -> tuple[torch.optim.Optimizer, Callable[[int], float]]:
    """The plain loop's optimizer and its learning rate at each step: the training recipe's (``ablate.recipe``),
    built from ``module``'s optim config as ``LitGPT.configure_optimizers`` and ``on_train_batch_start`` build them."""
    optim = module.hparams.optim
    return make_optimizer(module), lambda step: lr_at(step, optim)


def plain_run(b: Bench, cfg: DictConfig) -> dict[str, float]:
    """What ``ablate.train.run`` computes, as a plain PyTorch loop: the same data module, LitGPT's model,
    optimizer, LR schedule and diagnostics, gradient clipping, periodic evaluations (with attention entropy,
    and text samples where LitGPT writes them) and the final whole-split evaluation. No logging, progress bar,
    wandb or checkpoints."""
    start = time.perf_counter()
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    data = make_datamodule(OmegaConf.to_container(cfg.data, resolve=True), seed=cfg.seed)
    data.setup()
    module = build(cfg, data.tokenizer.state(), b.device)
    model, tr = module.model, cfg.trainer
    optimizer, lr_at_step = plain_optimizer_and_schedule(module)

    def evaluate(loader: Any, fitting: bool, step: int = 0) -> float:
        """LitGPT's validation_step and on_validation_epoch_end, after training step ``step``."""
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
            if fitting and sample_due(step, cfg.sample.every, tr.val_check_interval, tr.max_steps):
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
            group["lr"] = lr_at_step(step)
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
            eval_s += evaluate(data.val_dataloader(), fitting=True, step=step + 1)
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

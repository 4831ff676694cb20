"""The benchmark's sizes and the overrides each device adds: plain data, importable before torch and Lightning
(the command line checks ``--size`` against them before it loads anything heavy)."""

from __future__ import annotations

from dataclasses import dataclass


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

"""Training steps alone, in one process: nanoGPT's model (its checkout's ``model.py``, with its own
``configure_optimizers``) against ablate's ``gpt2`` preset and the presets with nanoGPT's choices swapped in
(exact GELU, no biases), each a plain PyTorch loop over the same random batches: forward, backward, clipping at
1.0, the optimizer's step. The arms take turns in rounds, so a machine's drift reaches all of them alike.

Run by ``ablate-bench --nanogpt`` as ``python -m ablate.bench.nanogpt_steps`` in the checkout (so that ``import
model`` is nanoGPT's); it prints one JSON object: the median seconds per step of each arm. This says how much
of a whole-process difference is the model's step (and which of GPT-2's choices it comes from) and how much is
everything around it. The activation variants alone, forward and backward at the MLP's hidden shape, say how much
of that is the activation's kernel.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch

# nanoGPT's config/train_shakespeare_char.py at ablate's default size (bench.nanogpt.NANOGPT_ARGS), and its
# train.py defaults for what that config does not set (bias=False, weight_decay=1e-1)
SIZE = {"block_size": 64, "n_layer": 4, "n_head": 4, "n_embd": 128}
BATCH, VOCAB = 12, 65
# ablate's arms: the gpt2 preset, and what nanoGPT's default architecture changes in it, alone and together
ABLATE_ARMS = {
    "ablate gpt2": [],
    "ablate gpt2, exact GELU": ["model/activation=gelu"],
    "ablate gpt2, no biases": ["model.bias=false"],
    "ablate gpt2, exact GELU, no biases": ["model/activation=gelu", "model.bias=false"],
}

Step = Callable[[torch.Tensor, torch.Tensor], None]


def _trainer(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
             loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Step:
    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        loss(x, y).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def nanogpt_arm() -> Step:
    """nanoGPT's GPT and AdamW from the checkout this process runs in."""
    import model as nanogpt  # the checkout's model.py: this module runs with the checkout as its working folder

    gpt = nanogpt.GPT(nanogpt.GPTConfig(**SIZE, vocab_size=VOCAB, dropout=0.0, bias=False))
    optimizer = gpt.configure_optimizers(1e-1, 1e-3, (0.9, 0.99), "cpu")
    return _trainer(gpt, optimizer, lambda x, y: gpt(x, y)[1])


def ablate_arm(overrides: list[str]) -> Step:
    """ablate's model and optimizer as ``ablate-train`` with ``overrides`` builds them."""
    from omegaconf import OmegaConf

    from ablate.bench.models import compose_config
    from ablate.model import GPT, GPTConfig
    from ablate.recipe import build_optimizer

    cfg = compose_config(*overrides)
    gpt = GPT(GPTConfig.from_dict(OmegaConf.to_container(cfg.model, resolve=True), vocab_size=VOCAB))
    optimizer = build_optimizer(gpt, OmegaConf.to_container(cfg.optim, resolve=True), "cpu")
    return _trainer(gpt, optimizer, lambda x, y: gpt(x, y)[1])


def time_steps(arms: dict[str, Step], rounds: int, steps: int, seed: int = 0) -> dict[str, float]:
    """Median seconds per step of each arm: ``rounds`` rounds of ``steps`` steps each, the arms in turn; the first
    round is untimed (warm-up). Every arm trains on the same batches."""
    generator = torch.Generator().manual_seed(seed)
    batches = [torch.randint(0, VOCAB, (BATCH, SIZE["block_size"] + 1), generator=generator) for _ in range(steps)]
    batches = [(b[:, :-1].contiguous(), b[:, 1:].contiguous()) for b in batches]  # nanoGPT's view() needs these
    times: dict[str, list[float]] = {name: [] for name in arms}
    for r in range(rounds + 1):
        for name, step in arms.items():
            for x, y in batches:
                start = time.perf_counter()
                step(x, y)
                if r:
                    times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def activation_modules() -> dict[str, torch.nn.Module]:
    """Every registered activation variant, as the MLP builds it."""
    from ablate.components.slots import activation

    return {name: activation.build(name) for name in activation.names()}


def time_activations(modules: dict[str, torch.nn.Module], rounds: int, steps: int,
                     seed: int = 0) -> dict[str, dict[str, float]]:
    """Median seconds of each module's forward and of its backward at the MLP's hidden shape (the batch's tokens
    by 4·n_embd; a step runs each once per layer), on the same input and output gradient, the modules in turns
    as in ``time_steps``."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(BATCH * SIZE["block_size"], 4 * SIZE["n_embd"], generator=generator)
    grad = torch.randn(x.shape, generator=generator)
    times: dict[str, dict[str, list[float]]] = {name: {"forward": [], "backward": []} for name in modules}
    for r in range(rounds + 1):
        for name, module in modules.items():
            for _ in range(steps):
                leaf = x.detach().requires_grad_()
                start = time.perf_counter()
                y = module(leaf)
                middle = time.perf_counter()
                y.backward(grad)
                end = time.perf_counter()
                if r:
                    times[name]["forward"].append(middle - start)
                    times[name]["backward"].append(end - middle)
    return {name: {part: statistics.median(ts) for part, ts in parts.items()} for name, parts in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=6, help="timed rounds (one untimed round first)")
    p.add_argument("--steps", type=int, default=25, help="steps per arm per round")
    args = p.parse_args()
    arms = {"nanoGPT model.py": nanogpt_arm(), **{name: ablate_arm(o) for name, o in ABLATE_ARMS.items()}}
    medians = time_steps(arms, args.rounds, args.steps)
    activations = time_activations(activation_modules(), args.rounds, args.steps)
    print(json.dumps({"rounds": args.rounds, "steps": args.steps, "overrides": ABLATE_ARMS,
                      "median_step_s": medians,
                      "activation": {"shape": [BATCH * SIZE["block_size"], 4 * SIZE["n_embd"]],
                                     "n_layer": SIZE["n_layer"], "median_s": activations}}))


if __name__ == "__main__":
    main()

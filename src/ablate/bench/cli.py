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
    ablate-bench --nanogpt ~/nanoGPT    # whole ablate-train processes against nanoGPT's train.py: nanogpt.md
"""


from __future__ import annotations

import argparse
import itertools
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ablate.bench.sizes import DEVICE_OVERRIDES, SIZES
from ablate.errors import AblateError, ArgumentParser

# The measuring modules (torch, Lightning, Hugging Face, Hydra) are imported where they are used, after the
# command line is checked: a wrong argument is one line at once, not after seconds of imports.


def bench_size(b: Any, name: str, args: argparse.Namespace, rates: dict[str, float]) -> dict[str, Any]:
    """Every measurement at one size (``b``: an :class:`ablate.bench.harness.Bench`), on the batches
    ``ablate-train`` would draw."""
    from omegaconf import OmegaConf

    from ablate.bench.models import build, compose_config
    from ablate.bench.overhead import bench_lightning
    from ablate.bench.peers import bench_hf
    from ablate.bench.variants import bench_bf16, bench_compile, bench_flops, bench_variants
    from ablate.data import make_datamodule

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
    p.add_argument("--nanogpt", type=Path, metavar="PATH",
                   help="instead: whole ablate-train processes against the train.py of this nanoGPT checkout, into "
                        "<out>/nanogpt.md and .json")
    p.add_argument("--pairs", type=int, default=2, help="with --nanogpt: pairs of whole runs (median; at least 2)")
    p.add_argument("--nanogpt-arg", action="append", default=[], metavar="ARG",
                   help="with --nanogpt: one more argument for nanoGPT's train.py, e.g. --nanogpt-arg=--max_iters=50")
    p.add_argument("--ablate-arg", action="append", default=[], metavar="ARG",
                   help="with --nanogpt: one more argument for ablate-train, e.g. --ablate-arg=trainer.max_steps=50")
    p.add_argument("--step-rounds", type=int, default=6, metavar="N",
                   help="with --nanogpt: then time both models' training steps alone, in one process, N rounds of 25 "
                        "steps per arm (0: not)")
    args = p.parse_args(argv)
    if args.nanogpt is None and (args.nanogpt_arg or args.ablate_arg):
        p.error("--nanogpt-arg and --ablate-arg go with --nanogpt PATH")
    if args.step_rounds < 0:
        p.error(f"--step-rounds {args.step_rounds}: must be 0 (no step timing) or more")
    if args.nanogpt is not None and (args.size or args.quick):
        p.error("--nanogpt runs whole processes at ablate's default size; leave out --size and --quick")
    if args.pairs < 2:
        p.error(f"--pairs {args.pairs}: must be at least 2 (pairs of whole runs, alternating)")
    if args.repeats is not None and args.repeats < 1:
        p.error(f"--repeats {args.repeats}: must be at least 1 (pairs of whole runs per mode)")
    if args.quick:
        args.size, args.steps, args.warmup = "quick", 3, 1
    for name in (args.size or "").split(","):
        if name and name not in SIZES:
            p.error(f"--size {name!r} is unknown; choose from: {', '.join(SIZES)}")
    if args.nanogpt is not None:
        from ablate.bench.nanogpt import check_checkout

        try:
            check_checkout(args.nanogpt.expanduser().resolve())
        except AblateError as e:
            p.error(str(e))
    import torch

    args.compile = not args.quick if args.compile is None else args.compile
    args.device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.device.type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is available; use --device cpu")
    args.size = (args.size or ("gpt2-small" if args.device.type == "cuda" else "cpu-small,cpu-large")).split(",")
    if args.device.type == "cuda" and args.peak_flops is None:
        from ablate.bench.machine import peak_bf16

        args.peak_flops = peak_bf16(torch.cuda.get_device_name(args.device))
    return args


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point: measure everything, then write ``<out>/<device>.md`` and ``.json``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    try:
        from ablate.config import import_user_modules

        import_user_modules()  # variants registered by the user are benchmarked too
    except AblateError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    import torch

    from ablate.atomic import atomic_write_json, atomic_write_text
    from ablate.bench.harness import Bench
    from ablate.bench.machine import busy_warning, environment, others_cpu_use
    from ablate.bench.markdown import markdown

    load, others = os.getloadavg()[0], others_cpu_use()
    if args.nanogpt is not None:
        write_nanogpt(args, argv, load, others)
        return
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
    report["warnings"] += busy_warning(load, others)
    for name in args.size:
        # the size's training precision: bf16-mixed on GPUs (DEVICE_OVERRIDES), fp32 on CPUs
        b = Bench(device, torch.bfloat16 if device.type == "cuda" else None, args.steps, args.warmup)
        report["sizes"][name] = bench_size(b, name, args, rates)
    out = Path(args.out)
    atomic_write_json(out / f"{device.type}.json", report)
    atomic_write_text(out / f"{device.type}.md", markdown(report))
    print(f"[ablate-bench] wrote {out / device.type}.md and .json", file=sys.stderr)


def write_nanogpt(args: argparse.Namespace, argv: Sequence[str], load: float, others: float | None) -> None:
    """``--nanogpt``: the whole-process comparison, into ``<out>/nanogpt.md`` and ``.json``."""
    import torch

    from ablate.atomic import atomic_write_json, atomic_write_text
    from ablate.bench.machine import busy_warning, environment
    from ablate.bench.markdown import nanogpt_markdown
    from ablate.bench.nanogpt import checkout_commit, compare
    from ablate.data import default_text_path

    checkout = args.nanogpt.expanduser().resolve()
    try:
        result = compare(checkout, default_text_path().read_text(encoding="utf-8"), args.pairs, args.nanogpt_arg,
                         args.ablate_arg, args.step_rounds)
    except AblateError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    warnings = busy_warning(load, others)
    if torch.cuda.is_available() and not any(a.startswith("trainer.accelerator=") for a in args.ablate_arg):
        warnings.append("a GPU is present: ablate-train trained on it while nanoGPT ran on the CPU (--device=cpu); "
                        "pass --ablate-arg=trainer.accelerator=cpu to compare like with like")
    report = {"command": " ".join(["ablate-bench", *argv]), **environment(torch.device("cpu")),
              "load_avg_1min_start": load, "others_cpu_use_start": others, "warnings": warnings,
              "nanogpt": {"path": str(checkout), "commit": checkout_commit(checkout)}, **result}
    out = Path(args.out)
    atomic_write_json(out / "nanogpt.json", report)
    atomic_write_text(out / "nanogpt.md", nanogpt_markdown(report))
    print(f"[ablate-bench] wrote {out / 'nanogpt'}.md and .json", file=sys.stderr)


if __name__ == "__main__":
    main()

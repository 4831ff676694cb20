"""The GPU measurements of ``scripts/gpu-check``: GPT-2 small against Hugging Face's GPT-2, and small runs side by side.

1. **GPT-2 small** (124M, block 1024, batch 16, GPT-2 BPE): ablate's training step with the GPU defaults (bf16
   autocast, TF32, fused AdamW, ``torch.compile``, flash attention through SDPA, vocabulary padded to 50,304)
   against ``transformers.GPT2LMHeadModel`` on the same settings (SDPA attention, bf16 autocast, fused AdamW,
   compiled), and against ablate without the padding; the arms alternate step by step (A B C A B C). MFU is the
   model's FLOPs per token (PyTorch's FLOP counter, unpadded vocabulary) × tokens/s over the card's dense bf16 peak.
2. **Jobs per GPU**: the default-size model's aggregate training tokens/s with 1, 4 and 8 ``ablate-train`` jobs
   side by side through ``hydra/launcher=parallel``.

``--dry-run`` runs every step on the CPU at tiny sizes (fp32 would hide the autocast path, so it keeps bf16), to
prove the script before GPU time is spent on it. Writes ``<out>/gpu.md`` and ``gpu.json`` (``gpu-dry-run.*``).
"""

from __future__ import annotations

import copy
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import nn

from ablate.atomic import atomic_write_json, atomic_write_text
from ablate.bench.harness import Bench, per_step
from ablate.bench.machine import environment, peak_bf16
from ablate.bench.models import build, compose_config, hf_loss, optimizer_like
from ablate.data import make_datamodule
from ablate.errors import ArgumentParser
from ablate.lit import training_flops_per_token
from ablate.model import GPTConfig

TARGET_MFU, TARGET_HF_RATIO = 0.45, 1.15  # issue 15's targets on an H100 / H200
GPT2_SMALL = ("model/size=small", "data.tokenizer=gpt2", "data.batch_size=16")
DRY_SIZE = ("model.n_layer=2", "model.n_head=2", "model.n_embd=64", "model.block_size=64", "data.tokenizer=gpt2",
            "data.batch_size=4")


def hf_gpt2(config: GPTConfig, device: torch.device) -> nn.Module:
    """Hugging Face's GPT-2 at these sizes, dropout off, SDPA attention (its fastest built-in kernel)."""
    import transformers

    hf_config = transformers.GPT2Config(
        vocab_size=config.vocab_size, n_positions=config.block_size, n_embd=config.n_embd, n_layer=config.n_layer,
        n_head=config.n_head, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, layer_norm_epsilon=1e-5,
        bos_token_id=0, eos_token_id=0, attn_implementation="sdpa",
    )
    return transformers.GPT2LMHeadModel(hf_config).to(device).train()


def bench_gpt2(device: torch.device, overrides: Sequence[str], steps: int, warmup: int, compile: bool
               ) -> dict[str, Any]:
    """ablate (GPU defaults), ablate unpadded and Hugging Face, one training step each in turn, same batches."""
    cuda_defaults = ("trainer.precision=bf16-mixed", "optim.fused=true") if device.type == "cuda" else ()
    cfg = compose_config(*overrides, *cuda_defaults, f"model.compile={str(compile).lower()}")
    data = make_datamodule(OmegaConf.to_container(cfg.data, resolve=True), seed=cfg.seed)
    data.setup()
    b = Bench(device, torch.bfloat16, steps, warmup)  # bf16 autocast, as trainer.precision=bf16-mixed
    batches = [x.to(device) for x in _take(data.train_dataloader(), warmup + steps)]
    padded = build(cfg, data.tokenizer.state(), device)  # model.vocab_multiple: 64 on GPUs (the default)
    if padded.model.config.vocab_multiple is None:
        padded = build(compose_config(*overrides, *cuda_defaults, "model.vocab_multiple=64",
                                      f"model.compile={str(compile).lower()}"), data.tokenizer.state(), device)
    plain = build(compose_config(*overrides, *cuda_defaults, "model.vocab_multiple=null",
                                 f"model.compile={str(compile).lower()}"), data.tokenizer.state(), device)
    config = plain.model.config
    hf = hf_gpt2(config, device)
    if compile:
        hf.compile()
    arms = {
        "ablate": b.step_fn(padded.model.train(), optimizer_like(padded, padded.model)),
        "ablate_unpadded": b.step_fn(plain.model.train(), optimizer_like(plain, plain.model)),
        "hf": b.step_fn(hf, optimizer_like(plain, hf), hf_loss),
    }
    first: dict[str, float] = {}
    for name, step in arms.items():  # the first step compiles: timed apart
        b.sync()
        start = time.perf_counter()
        step(batches[0])
        b.sync()
        first[name] = time.perf_counter() - start
    times = b.paired(arms, batches)
    flops_per_token = training_flops_per_token(copy.copy(config))
    peak = peak_bf16(torch.cuda.get_device_name(device)) if device.type == "cuda" else None
    result: dict[str, Any] = {
        "overrides": list(overrides), "compile": compile, "steps": steps, "warmup": warmup,
        "sizes": {"n_layer": config.n_layer, "n_head": config.n_head, "n_embd": config.n_embd,
                  "block_size": config.block_size, "batch_size": data.batch_size, "vocab_size": config.vocab_size,
                  "vocab_padded": padded.model.config.padded_vocab_size, "n_params": plain.model.num_params()},
        "fused_adamw": {name: bool(opt.defaults.get("fused")) for name, opt in
                        (("ablate", optimizer_like(padded, padded.model)), ("hf", optimizer_like(plain, hf)))},
        "first_step_s": first, "flops_per_token": flops_per_token, "peak_flops": peak,
    }
    for name, seconds in times.items():
        row = per_step(seconds, batches[0])
        row["flops_per_s"] = flops_per_token * row["tokens_per_s"]
        row["mfu"] = row["flops_per_s"] / peak if peak else None
        result[name] = row
    result["ratio_ours_over_hf"] = times["hf"] / times["ablate"]
    result["ratio_padded_over_unpadded"] = times["ablate_unpadded"] / times["ablate"]
    return result


def _take(loader: Any, n: int) -> list[torch.Tensor]:
    out = []
    for batch in loader:
        out.append(batch)
        if len(out) == n:
            return out
    return out


def jobs_per_gpu(jobs: Sequence[int], steps: int, extra: Sequence[str], out: Path, timeout: float) -> dict[str, Any]:
    """Aggregate training tokens/s of K default-size runs side by side (``hydra/launcher=parallel``), for each K."""
    rows = []
    for k in jobs:
        sweep_dir = out / f"jobs-{k}"
        cmd = [sys.executable, "-m", "ablate.train", "-m", "hydra/launcher=parallel", f"hydra.launcher.n_jobs={k}",
               f"hydra.sweep.dir={sweep_dir}", f"seed={','.join(str(s) for s in range(1, k + 1))}",
               f"trainer.max_steps={steps}", "logger.mode=disabled", "trainer.enable_progress_bar=false", *extra]
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        wall = time.perf_counter() - start
        summaries = [json.loads(p.read_text()) for p in sorted(sweep_dir.rglob("summary.json"))]
        row: dict[str, Any] = {"jobs": k, "returncode": proc.returncode, "wall_s": wall, "runs": len(summaries)}
        if proc.returncode != 0 or len(summaries) != k:
            lines = [ln for ln in proc.stderr.strip().splitlines() if "HYDRA_FULL_ERROR" not in ln]
            row["error"] = (lines or ["no output"])[-1][:300]
        done = [s for s in summaries if s.get("status") == "completed"]
        if done:
            tokens = sum(s["steps"] * s["sizes"]["block_size"] for s in done) * _batch(extra)
            row.update(
                completed=len(done),
                tokens_per_s_sum=sum(s.get("tokens_per_sec", 0.0) for s in done),  # while training, side by side
                tokens_per_s_end_to_end=tokens / wall,  # start-up, evaluations and all
                val_loss_final=statistics.mean(s["val_loss_final"] for s in done),
                runtime=done[0].get("runtime"),
            )
        rows.append(row)
    base = next((r["tokens_per_s_sum"] for r in rows if r["jobs"] == 1 and "tokens_per_s_sum" in r), None)
    for r in rows:
        if base and r.get("tokens_per_s_sum"):
            r["speedup_over_1_job"] = r["tokens_per_s_sum"] / base
    return {"steps": steps, "overrides": list(extra), "rows": rows}


def _batch(overrides: Sequence[str]) -> int:
    given = [o.split("=", 1)[1] for o in overrides if o.startswith("data.batch_size=")]
    return int(given[-1]) if given else int(compose_config().data.batch_size)


def markdown(report: dict[str, Any]) -> str:
    g, env = report["gpt2"], report
    dry = report["dry_run"]
    lines = [
        f"# GPU benchmark{' (dry run on the CPU: tiny sizes, no numbers to quote)' if dry else ''}",
        "",
        f"`{report['command']}` on {env['machine']['gpu'] or env['machine']['cpu']}, {report['date']}; "
        f"torch {env['versions']['torch']}, transformers {env['versions']['transformers']}, "
        f"ablate {env['versions']['ablate']}.",
        "",
        "## GPT-2 small: ablate against Hugging Face's GPT-2",
        "",
        f"{g['sizes']['n_layer']} layers × {g['sizes']['n_embd']} dims, block {g['sizes']['block_size']}, batch "
        f"{g['sizes']['batch_size']}, vocabulary {g['sizes']['vocab_size']} (ablate pads it to "
        f"{g['sizes']['vocab_padded']}); bf16 autocast, "
        f"{'fused' if all(g['fused_adamw'].values()) else 'unfused'} AdamW, {'compiled' if g['compile'] else 'eager'}; "
        f"median of {g['steps']} steps per arm after {g['warmup']}, arms alternating.",
        "",
        "| arm | ms/step | tokens/s | MFU | first step (compiles), s |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name in ("ablate", "ablate_unpadded", "hf"):
        r = g[name]
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
        lines.append(f"| {name} | {r['ms_per_step']:.1f} | {r['tokens_per_s']:,.0f} | {mfu} | "
                     f"{g['first_step_s'][name]:.1f} |")
    mfu = g["ablate"]["mfu"]
    peak = f"{g['peak_flops'] / 1e12:.0f} TFLOP/s" if g["peak_flops"] else "an unknown peak"
    verdict = "unknown" if mfu is None else "met" if mfu >= TARGET_MFU else "not met"
    lines += [
        "",
        f"- ablate / Hugging Face tokens/s: **{g['ratio_ours_over_hf']:.2f}×** (target ≥ {TARGET_HF_RATIO}×: "
        f"{'met' if g['ratio_ours_over_hf'] >= TARGET_HF_RATIO else 'not met'})",
        f"- MFU: **{'n/a' if mfu is None else f'{100 * mfu:.1f}%'}** of "
        f"{peak} dense bf16 (target ≥ {100 * TARGET_MFU:.0f}%: {verdict})",
        f"- vocabulary padding speed-up: {g['ratio_padded_over_unpadded']:.3f}×",
        "",
        "## Small runs side by side: jobs per GPU",
        "",
        f"The default-size model, {report['jobs']['steps']} steps per run, K runs at once through "
        f"`hydra/launcher=parallel`.",
        "",
        "| jobs | completed | aggregate training tokens/s | × one job | end-to-end tokens/s | sweep wall s |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in report["jobs"]["rows"]:
        if "tokens_per_s_sum" not in r:
            lines.append(f"| {r['jobs']} | 0 | failed: {r.get('error', '')} | | | {r['wall_s']:.0f} |")
            continue
        lines.append(f"| {r['jobs']} | {r['completed']} | {r['tokens_per_s_sum']:,.0f} | "
                     f"{_x(r.get('speedup_over_1_job'))} | {r['tokens_per_s_end_to_end']:,.0f} | "
                     f"{r['wall_s']:.0f} |")
    return "\n".join(lines) + "\n"


def _x(ratio: float | None) -> str:
    return f"{ratio:.2f}×" if ratio else "n/a"


def main(argv: Sequence[str] | None = None) -> None:
    p = ArgumentParser(prog="python -m ablate.gpucheck", description=__doc__.split("\n\n")[0])
    p.add_argument("--dry-run", action="store_true", help="every step on the CPU at tiny sizes")
    p.add_argument("--steps", type=int, help="timed steps per arm (default 30; dry run 2)")
    p.add_argument("--jobs", default=None, help="jobs per GPU to measure, comma-separated (default 1,4,8; dry 1,2)")
    p.add_argument("--run-steps", type=int, help="steps of each side-by-side run (default 1000; dry run 12)")
    p.add_argument("--out", default="reports/benchmarks", help="folder for gpu.md and gpu.json")
    p.add_argument("--job-timeout", type=float, default=240, help="seconds allowed for each side-by-side sweep")
    args = p.parse_args(argv)
    dry = args.dry_run
    if not dry and not torch.cuda.is_available():
        p.error("no CUDA device is available; use --dry-run to check the script on a CPU")
    device = torch.device("cpu" if dry else "cuda")
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")  # TF32, as ablate-train does on GPUs
    out = Path(args.out)
    work = Path(tempfile.mkdtemp(prefix="ablate-gpucheck-"))  # the side-by-side runs' folders, not the report's
    report: dict[str, Any] = {
        "command": " ".join(["python -m ablate.gpucheck", *(argv if argv is not None else sys.argv[1:])]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "dry_run": dry, **environment(device),
    }
    print("[gpu-check] GPT-2 small: ablate vs Hugging Face ...", file=sys.stderr, flush=True)
    report["gpt2"] = bench_gpt2(device, DRY_SIZE if dry else GPT2_SMALL, args.steps or (2 if dry else 30),
                                1 if dry else 5, compile=not dry)
    jobs = [int(k) for k in (args.jobs or ("1,2" if dry else "1,4,8")).split(",")]
    print(f"[gpu-check] jobs per GPU {jobs} ...", file=sys.stderr, flush=True)
    extra = ["model.n_layer=1", "model.n_embd=16", "model.n_head=2", "trainer.val_check_interval=2",
             "data.eval_batches=1", "sample.max_new_tokens=2", "model.block_size=16"] if dry else []
    report["jobs"] = jobs_per_gpu(jobs, args.run_steps or (12 if dry else 1000), extra, work, args.job_timeout)
    stem = "gpu-dry-run" if dry else "gpu"
    atomic_write_json(out / f"{stem}.json", report)
    atomic_write_text(out / f"{stem}.md", markdown(report))
    print(f"[gpu-check] wrote {out / stem}.md and .json", file=sys.stderr)
    failed = [r for r in report["jobs"]["rows"] if r.get("completed", 0) != r["jobs"]]
    if failed:
        print(f"[gpu-check] {len(failed)} side-by-side sweep(s) did not complete: {failed[0].get('error')}",
              file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()

"""4. every variant of every slot against the ``gpt2`` preset; 5.-7. model FLOPs, ``torch.compile``, bf16."""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ablate.bench.harness import Bench, per_step
from ablate.bench.models import NOTES, build, compose_config, optimizer_like
from ablate.lit import LitGPT
from ablate.registry import SLOTS

Step = Callable[[torch.Tensor], None]


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

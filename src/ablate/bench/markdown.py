"""The benchmark's report as markdown (``<out>/<device>.md``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ablate.clock import PHASES


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
        f"evaluation: every {lt['val_check_interval']} steps on `data.eval_batches` fixed batches (and a text "
        f"sample every `sample.every` steps), then the whole validation split. Without: periodic evaluation set "
        f"beyond `max_steps`; the final whole-split evaluation still runs, listed apart. Lightning's parts are timed "
        f"by a `Trainer` subclass.", "",
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


def _preamble(title: str, report: dict[str, Any]) -> list[str]:
    """The title, any warnings, the command, the machine, the versions and how busy the machine was at start."""
    m, v = report["machine"], report["versions"]
    return [f"# {title}", "", *(f"> **Warning:** {w}\n" for w in report["warnings"]),
            f"- Command: `{report['command']}`",
            f"- Machine: {m['cpu']}" + (f" ({m['cpu_capability']} kernels)" if m.get("cpu_capability") else "")
            + f", {m['cores']} cores, {m['torch_threads']} torch threads, "
            f"GPU: {m['gpu'] or 'none'}",
            "- Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
            f"- At start: 1-minute load average {report['load_avg_1min_start']:.2f} (this process's start-up "
            f"included); other processes' CPU use over 2 s " + (f"{report['others_cpu_use_start']:.2f} CPUs"
            if report.get("others_cpu_use_start") is not None else "not measured (no /proc/stat)")]


def markdown(report: dict[str, Any]) -> str:
    mm = report["matmul_flops_per_s"]
    lines = [*_preamble(f"ablate benchmark: {report['device']}", report),
             f"- Timing: median of {report['steps']} steps per arm after {report['warmup']} warm-up step(s) per arm; "
             f"the arms of a comparison alternate step by step (A B A B ...), all in one process.",
             f"- Matrix product {mm['n']}×{mm['n']}, best of 5: fp32 {_gflops(mm['fp32'])} GFLOP/s, "
             f"bf16 {_gflops(mm['bf16'])} GFLOP/s"
             + (" (bf16 emulated: this CPU has no native bf16 matrix units)" if mm["bf16"] < mm["fp32"] / 4 else ""),
             ""]
    for name, s in report["sizes"].items():
        lines += _size_markdown(name, s, report["device"])
    return "\n".join(lines)


def _num(value: float | None, fmt: str = ".2f", scale: float = 1.0) -> str:
    return "n/a" if value is None else f"{value * scale:{fmt}}"


def nanogpt_markdown(report: dict[str, Any]) -> str:
    """The whole-process comparison with nanoGPT (``<out>/nanogpt.md``)."""
    n, a, d, ng = report["median"]["nanogpt"], report["median"]["ablate"], report["data"], report["nanogpt"]

    def ratio(key: str) -> str:
        return _x(a[key] / n[key]) if a.get(key) and n.get(key) else ""

    lines = [*_preamble("ablate-train against nanoGPT: whole processes", report),
             f"- nanoGPT: `{ng['path']}` at commit {ng['commit'] or 'unknown (not a git work tree)'}, run by the same "
             f"Python and torch as ablate",
             f"- Data: the tiny Shakespeare ablate ships; for nanoGPT, made into `train.bin`, `val.bin` and `meta.pkl` "
             f"as its `data/shakespeare_char/prepare.py` makes them (vocabulary {d['vocab_size']}, "
             f"{d['train_tokens']:,} training and {d['val_tokens']:,} validation tokens), in a temporary folder",
             f"- nanoGPT: `{report['commands']['nanogpt']}`",
             f"- ablate: `{report['commands']['ablate']}` (in an empty folder)",
             f"- Timing: {report['pairs']} pairs of whole processes, alternating (nanoGPT, ablate, nanoGPT, ...) after "
             f"one short untimed run of each; medians over the pairs. Wall time is measured from outside, launch to "
             f"exit; the other times are read from what each process states (below).", ""]
    lines += _table(["", "nanoGPT `train.py`", "`ablate-train`", "ablate / nanoGPT"], [
        ["wall time (s)", _num(n["wall_s"]), _num(a["wall_s"]), ratio("wall_s")],
        ["time to the first training step (s)",
         _num(n["time_to_first_step_s"]) + (f" (its step-0 evaluation ≈ {n['step0_eval_s']:.2f})"
                                            if n.get("step0_eval_s") is not None else ""),
         _num(a["time_to_first_step_s"]), ratio("time_to_first_step_s")],
        ["time per training step (ms)", _num(n["time_per_step_s"], ".1f", 1e3), _num(a["time_per_step_s"], ".1f", 1e3),
         ratio("time_per_step_s")],
        ["training steps", n["steps"], a["steps"], ""],
        ["evaluation during training (s)", f"≈ {_num(n['eval_time_s'])} ({n['evals']} evaluations)",
         _num(a["eval_time_s"]), ""],
        ["final evaluation (s)", "none", f"{_num(a['final_eval_time_s'])} (the whole validation split)", ""],
        ["final validation loss", f"{n['val_loss_last_eval']:.4f} (train {n['train_loss_last_eval']:.4f}), step "
         f"{n['last_eval_step']}", f"{_num(a['val_loss_last_eval'], '.4f')} (whole split "
         f"{_num(a['val_loss_whole_split'], '.4f')})", ""],
    ])
    lines += _paired_lines(report.get("paired"))
    phases = [(name, a[f"startup_{name}_s"]) for name in PHASES if a.get(f"startup_{name}_s") is not None]
    if phases:
        lines += ["ablate's time to the first step by phase (medians, its record's `time_to_first_step_parts_s`): "
                  + ", ".join(f"{name.replace('_', ' ')} {seconds:.2f} s" for name, seconds in phases) + ".", ""]
    lines += ["Each run:", ""]
    lines += _table(["run", "wall (s)", "to first step (s)", "ms/step", "evaluation (s)", "validation loss"], [
        [f"{side} {i + 1}", _num(r["wall_s"]), _num(r["time_to_first_step_s"]), _num(r["time_per_step_s"], ".1f", 1e3),
         _num(r["eval_time_s"]), _num(r["val_loss_last_eval"], ".4f")]
        for i in range(report["pairs"]) for side in ("nanogpt", "ablate") for r in [report["runs"][side][i]]])
    lines += [
        "How each number is read, and what differs between the two:", "",
        "- nanoGPT's time to the first step is from launch to its `iter 0` line, which it prints after evaluating "
        "both splits at step 0 and taking its first step; ablate's is its record's `time_to_first_step_s`, from the "
        "process's start to the end of its first step (it does not evaluate before training).",
        "- nanoGPT's time per step is the median of its `iter N: ... time Xms` lines (every `log_interval` steps), "
        "leaving out step 0 and the steps that also evaluated; ablate's is the median over its logged rows of its "
        "training clock (`train/time` in `metrics.csv`, evaluations excluded) per step.",
        "- nanoGPT prints no evaluation time: it is estimated as the time of each step that evaluated less the median "
        "step. It evaluates `eval_iters` random batches of each split at step 0 and every `eval_interval` steps, "
        "saving a checkpoint when the validation loss improves. ablate evaluates `data.eval_batches` fixed validation "
        "batches every `trainer.val_check_interval` steps and writes a checkpoint each time (a text sample at the "
        "first evaluation at or after every `sample.every` steps and at the last), and at the end evaluates the "
        "whole validation split (`eval_time_s`, `final_eval_time_s` in its record).",
        "- nanoGPT trains one step more than `max_iters` (steps 0 to `max_iters`); its losses are means over random "
        "batches, ablate's over fixed ones, so the two losses differ by sampling as well as by training.",
        "- ablate also writes its record, `metrics.csv` and an offline wandb run as it goes; both run on all the "
        "machine's cores with PyTorch's default threads.", ""]
    if report.get("steps"):
        lines += _step_table(report["steps"])
    return "\n".join(lines)


def _paired_lines(paired: dict[str, Any] | None) -> list[str]:
    """Each pair's ratio and their geometric mean with its interval: how sure the ratio is on a drifting machine."""
    names = {"wall_s": "wall time", "time_to_first_step_s": "time to the first step",
             "time_per_step_s": "time per step"}
    paired, parts = paired or {}, []
    for key, name in names.items():
        p = paired.get(key)
        if not p or not p["ratios"]:
            continue
        interval = f", 95% interval {_x(p['ci'][0])} to {_x(p['ci'][1])}" if p["ci"] else ""
        mean = f" (geometric mean {_x(p['geomean'])}{interval})" if len(p["ratios"]) > 1 else ""
        parts.append(f"{name} {', '.join(_x(r) for r in p['ratios'])}{mean}")
    if not parts:
        return []
    return ["Pair by pair (each ablate run over the nanoGPT run just before it, so that the machine's drift between "
            "pairs cancels; the interval is a t-interval over the pairs' log ratios): " + "; ".join(parts) + ".", "",
            *_verdict(paired.get("wall_s"))]


def _verdict(wall: dict[str, Any] | None) -> list[str]:
    """What the wall-time interval says of the target, ablate no slower than nanoGPT: met where the whole interval
    is at or below 1.00x, not met where it is above, and not told apart where it holds 1.00x."""
    if not wall or not wall["ci"]:
        return []
    low, high = wall["ci"]
    pairs = len(wall["ratios"])
    if high <= 1.0:
        said = "**met**: ablate is no slower than nanoGPT on this host (the whole interval is at or below 1.00×)"
    elif low > 1.0:
        said = "**not met**: ablate is slower than nanoGPT on this host (the whole interval is above 1.00×)"
    else:
        said = (f"**not told apart** with {pairs} pairs: the interval holds 1.00×, so this host cannot say which is "
                f"faster; more pairs (`--pairs`) narrow it")
    return [f"The target, ablate's wall time at most nanoGPT's, at 95% confidence: {said}.", ""]


def _step_table(steps: dict[str, Any]) -> list[str]:
    """The training steps alone (``ablate.bench.nanogpt_steps``): which of the step's cost is the model's."""
    medians = steps["median_step_s"]
    base = medians["nanoGPT model.py"]
    built = {name: " ".join(f"`{o}`" for o in overrides) or "`ablate-train`'s default"
             for name, overrides in steps["overrides"].items()}
    built["nanoGPT model.py"] = "its `GPT` (`bias=False`, exact GELU) and `configure_optimizers`"
    return [
        "### Training steps alone", "",
        f"The same comparison without processes around it: one process (in the checkout, so that `import model` is "
        f"nanoGPT's), a plain PyTorch loop per model over the same random batches (forward, backward, clipping at "
        f"1.0, the optimizer's step), the arms in turn, {steps['rounds']} timed rounds of {steps['steps']} steps "
        f"each after an untimed one; medians.", "",
        *_table(["model", "as built", "ms per step", "× nanoGPT's"],
                [[name, built[name], _num(t, ".1f", 1e3), _x(t / base)] for name, t in medians.items()]),
        *(_activation_table(steps["activation"]) if steps.get("activation") else []),
    ]


def _activation_table(activation: dict[str, Any]) -> list[str]:
    """Each activation variant alone (``nanogpt_steps.time_activations``): what the choice of activation costs a
    step, against exact GELU (nanoGPT's)."""
    rows, n_layer = activation["median_s"], activation["n_layer"]
    per_step = {name: n_layer * (t["forward"] + t["backward"]) for name, t in rows.items()}
    exact = per_step.get("gelu")
    return [
        "Each activation variant alone, in the same process after the steps: its forward and its backward on one "
        f"layer's MLP activations ({activation['shape'][0]} × {activation['shape'][1]}: the batch's tokens by "
        f"4·n_embd), the same input and gradient for each, in turns, the same rounds; medians. A step runs each "
        f"once per layer ({n_layer}).", "",
        *_table(["activation", "forward (ms)", "backward (ms)", f"per step, × {n_layer} layers (ms)",
                 "per step more than `gelu` (ms)"],
                [[f"`{name}`", _num(t["forward"], ".3f", 1e3), _num(t["backward"], ".3f", 1e3),
                  _num(per_step[name], ".2f", 1e3),
                  "n/a" if exact is None else f"{(per_step[name] - exact) * 1e3:+.2f}"] for name, t in rows.items()]),
    ]

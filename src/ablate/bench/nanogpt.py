"""Whole processes against nanoGPT: ``ablate-train`` and nanoGPT's ``train.py`` (from a checkout the user has; the
project holds none of nanoGPT's code), each run as a user runs it, alternating (A B A B ...).

nanoGPT reads its data from ``data/shakespeare_char``, made by its ``prepare.py`` from a downloaded copy of tiny
Shakespeare; here the same files are made from the copy ablate ships, as ``prepare.py`` makes them, in a temporary
folder that nanoGPT is pointed to (``--dataset`` with an absolute path, ``--out_dir`` for its checkpoint), so the
checkout is never written to. Both train the same model size on the same text with the same recipe: nanoGPT's
``config/train_shakespeare_char.py`` cut to ablate's default size, and ``ablate-train`` with no arguments.

What each side says about itself differs, so each number is read where that side states it:

- wall time: launch to exit, measured here, for both;
- time to the first training step: ablate's record (``time_to_first_step_s``, from the process's start); for
  nanoGPT, launch to its ``iter 0`` line, which it prints after its step-0 evaluation and its first step;
- time per step: the median of nanoGPT's ``iter N: ... time Xms`` lines (each one step, or one step and an
  evaluation: those are left out, as is step 0); for ablate, the median over its logged rows of the training clock
  (``train/time``, evaluations excluded) per step;
- evaluation time: ablate's record (``eval_time_s``, ``final_eval_time_s``); nanoGPT prints none, so it is
  estimated as the time of each step that evaluated less the median step;
- final losses: nanoGPT's last ``step N: train loss X, val loss Y`` line (``eval_iters`` random batches of each
  split); ablate's last validation loss on its fixed batches and its loss on the whole validation split.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ablate.contract import METRICS, SUMMARY, by_metric, read_metrics, read_summary
from ablate.errors import AblateError

# nanoGPT's CPU "baby GPT" at ablate's default size: the command its README gives for a CPU, cut to 4 x 128
NANOGPT_ARGS = ("config/train_shakespeare_char.py", "--device=cpu", "--compile=False", "--eval_iters=20",
                "--block_size=64", "--batch_size=12", "--n_layer=4", "--n_head=4", "--n_embd=128",
                "--max_iters=2000", "--lr_decay_iters=2000", "--dropout=0.0")
NEEDED = ("train.py", "model.py", "configurator.py", "config/train_shakespeare_char.py")
# one untimed run of each side first (the OS's file cache, ablate's token cache), as short as each allows
WARMUP_ARGS = {"nanogpt": ("--max_iters=1", "--lr_decay_iters=1", "--eval_iters=1"),
               "ablate": ("trainer.max_steps=1", "data.eval_batches=1")}

ITER = re.compile(r"^iter (\d+): loss (\S+), time (\S+)ms")
EVAL = re.compile(r"^step (\d+): train loss (\S+), val loss (\S+)$")


def check_checkout(path: Path) -> None:
    """Refuse a folder that is not a nanoGPT checkout, naming what is missing."""
    missing = [name for name in NEEDED if not (path / name).is_file()]
    if missing:
        raise AblateError(f"--nanogpt {path}: not a nanoGPT checkout (no {', '.join(missing)}); clone "
                          f"https://github.com/karpathy/nanoGPT and pass its folder")


def prepare_shakespeare_char(text: str, out: Path) -> dict[str, int]:
    """nanoGPT's ``data/shakespeare_char/prepare.py`` on ``text``, byte for byte: the vocabulary is the sorted
    distinct characters; ``train.bin`` and ``val.bin`` are their ids as uint16, split at ``int(0.9 * len)``;
    ``meta.pkl`` is ``{'vocab_size', 'itos', 'stoi'}`` pickled. Returns the vocabulary and split sizes."""
    chars = sorted(set(text))
    stoi = {ch: i for i, ch in enumerate(chars)}
    itos = {i: ch for i, ch in enumerate(chars)}
    ids = np.array([stoi[c] for c in text], dtype=np.uint16)
    split = int(len(text) * 0.9)
    out.mkdir(parents=True, exist_ok=True)
    ids[:split].tofile(out / "train.bin")
    ids[split:].tofile(out / "val.bin")
    with open(out / "meta.pkl", "wb") as f:
        pickle.dump({"vocab_size": len(chars), "itos": itos, "stoi": stoi}, f)
    return {"vocab_size": len(chars), "train_tokens": split, "val_tokens": len(text) - split}


def parse_nanogpt(stdout: str) -> dict[str, Any]:
    """Steps, time per step, estimated evaluation time and final losses from nanoGPT's ``train.py`` output."""
    iters = {int(m[1]): (float(m[2]), float(m[3]) / 1e3) for m in map(ITER.match, stdout.splitlines()) if m}
    evals = {int(m[1]): (float(m[2]), float(m[3])) for m in map(EVAL.match, stdout.splitlines()) if m}
    if not iters or not evals:
        raise AblateError("nanoGPT's output has no 'iter N: loss ..., time ...ms' or no 'step N: train loss ..., "
                          "val loss ...' line; is it nanoGPT's train.py?")
    plain = [dt for n, (_, dt) in iters.items() if n > 0 and n not in evals]
    step = statistics.median(plain) if plain else None
    timed = [n for n in evals if n in iters]  # evaluations whose step was logged
    last = max(evals)
    return {
        "steps": max(iters) + 1, "time_per_step_s": step,
        "eval_time_s": sum(iters[n][1] - step for n in timed) if step is not None else None,
        "step0_eval_s": iters[0][1] - step if step is not None and 0 in timed else None,
        "evals": len(evals), "evals_timed": len(timed),
        "train_loss_last_eval": evals[last][0], "val_loss_last_eval": evals[last][1], "last_eval_step": last,
    }


def parse_ablate(run_dir: Path) -> dict[str, Any]:
    """The same numbers from an ``ablate-train`` run's record (``summary.json``, ``metrics.csv``)."""
    summary = read_summary(run_dir)
    clock = by_metric(read_metrics(run_dir)).get("train/time", {})
    steps = sorted(clock)
    per_step = [(clock[b] - clock[a]) / (b - a) for a, b in zip(steps, steps[1:])]
    return {
        "steps": summary.get("steps"), "time_per_step_s": statistics.median(per_step) if per_step else None,
        "time_to_first_step_s": summary.get("time_to_first_step_s"), "eval_time_s": summary.get("eval_time_s"),
        "final_eval_time_s": summary.get("final_eval_time_s"), "val_loss_last_eval": summary.get("val_loss_last"),
        "val_loss_whole_split": summary.get("val_loss_final"), "status": summary.get("status"),
        # the start-up's phases as flat numbers (ablate.clock.PHASES), so that medians take them one by one
        **{f"startup_{name}_s": s for name, s in (summary.get("time_to_first_step_parts_s") or {}).items()},
    }


def _launch(cmd: Sequence[str], cwd: Path, log: Path, first_line: re.Pattern[str] | None = None,
            env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``cmd`` to its end: its wall time, its stdout, and when (after launch) ``first_line`` arrived."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}  # lines arrive as they are printed
    start, first_at, lines = time.perf_counter(), None, []
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=err, text=True)
        for line in proc.stdout:  # type: ignore[union-attr]
            if first_at is None and first_line is not None and first_line.match(line):
                first_at = time.perf_counter() - start
            lines.append(line)
        rc = proc.wait()
    wall = time.perf_counter() - start
    if rc != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-20:])
        raise AblateError(f"{' '.join(cmd)} (in {cwd}) exited with {rc}; its last lines:\n{tail}")
    return {"wall_s": wall, "stdout": "".join(lines), "first_line_s": first_at}


def run_nanogpt(checkout: Path, data: Path, work: Path, extra: Sequence[str] = ()) -> dict[str, Any]:
    """One whole nanoGPT ``train.py`` process on the prepared data; its checkpoint goes to ``work``."""
    work.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "train.py", *NANOGPT_ARGS, f"--dataset={data}", f"--out_dir={work}", *extra]
    # no __pycache__ in the user's checkout (nanoGPT imports its model.py from there)
    out = _launch(cmd, checkout, work / "stderr.txt", first_line=ITER, env={"PYTHONDONTWRITEBYTECODE": "1"})
    return {"wall_s": out["wall_s"], "time_to_first_step_s": out["first_line_s"], **parse_nanogpt(out["stdout"])}


def ablate_train() -> list[str]:
    """The ``ablate-train`` of this environment."""
    sibling = Path(sys.executable).with_name("ablate-train")
    return [str(sibling)] if sibling.is_file() else [sys.executable, "-m", "ablate.train"]


def run_ablate(work: Path, extra: Sequence[str] = ()) -> dict[str, Any]:
    """One whole ``ablate-train`` process, in ``work`` (its run folder lands in ``work/outputs/<date>/<time>``)."""
    work.mkdir(parents=True, exist_ok=True)
    out = _launch([*ablate_train(), *extra], work, work / "stderr.txt")
    (run_dir,) = {p.parent for p in work.glob(f"outputs/*/*/{SUMMARY}")}
    if not (run_dir / METRICS).is_file():
        raise AblateError(f"{run_dir} has no {METRICS}")
    return {"wall_s": out["wall_s"], **parse_ablate(run_dir)}


def alternate(sides: dict[str, Callable[[], dict[str, Any]]], pairs: int) -> dict[str, list[dict[str, Any]]]:
    """Each side ``pairs`` times, in turn (A B A B ...): a slow patch of the machine hits both alike."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in sides}
    for _ in range(pairs):
        for name, fn in sides.items():
            runs[name].append(fn())
    return runs


def medians(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The median of each number over the runs; a field that is the same in every run (a step count, a status)
    or is not a number in every run, as the first run has it."""
    out: dict[str, Any] = {}
    for key, value in runs[0].items():
        values = [r.get(key) for r in runs]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        out[key] = statistics.median(values) if numeric and len(set(values)) > 1 else value
    return out


PAIRED = ("wall_s", "time_to_first_step_s", "time_per_step_s")


def paired_ratio(nanogpt: Sequence[dict[str, Any]], ablate: Sequence[dict[str, Any]], key: str) -> dict[str, Any]:
    """ablate over nanoGPT for ``key`` in each pair (ablate's run over the nanoGPT run just before it, so that a
    machine's drift between pairs cancels), their geometric mean and its 95% t-interval over the pairs' log ratios;
    pairs without the number are left out, and the interval is None with fewer than two left."""
    from ablate.report.arms import spread  # here: scipy.stats is heavy, and the CLI's checks import this module

    ratios = [a[key] / n[key] for n, a in zip(nanogpt, ablate) if n.get(key) and a.get(key)]
    if not ratios:
        return {"ratios": [], "geomean": None, "ci": None}
    logs = spread([float(np.log(r)) for r in ratios])
    return {"ratios": ratios, "geomean": float(np.exp(logs.mean)),
            "ci": [float(np.exp(x)) for x in logs.ci] if logs.ci else None}


def steps_alone(checkout: Path, rounds: int) -> dict[str, Any]:
    """The training steps alone (``ablate.bench.nanogpt_steps``), in a process of their own in the checkout."""
    out = subprocess.run([sys.executable, "-m", "ablate.bench.nanogpt_steps", f"--rounds={rounds}"], cwd=checkout,
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise AblateError(f"timing the steps in {checkout} failed: {(out.stderr.strip().splitlines() or [''])[-1]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def compare(checkout: Path, text: str, pairs: int, nanogpt_extra: Sequence[str] = (),
            ablate_extra: Sequence[str] = (), step_rounds: int = 6) -> dict[str, Any]:
    """Prepare nanoGPT's data from ``text``, warm up, then alternate the two whole processes ``pairs`` times; then
    time the two models' training steps alone, ``step_rounds`` rounds (0: not)."""
    check_checkout(checkout)
    with tempfile.TemporaryDirectory(prefix="ablate-bench-nanogpt-") as tmp:
        root = Path(tmp)
        data = root / "shakespeare_char"
        sizes = prepare_shakespeare_char(text, data)
        count = iter(range(10**6))

        def nanogpt(*more: str) -> dict[str, Any]:
            return run_nanogpt(checkout, data, root / f"nanogpt-{next(count)}", [*nanogpt_extra, *more])

        def ablate(*more: str) -> dict[str, Any]:
            return run_ablate(root / f"ablate-{next(count)}", [*ablate_extra, *more])

        nanogpt(*WARMUP_ARGS["nanogpt"]), ablate(*WARMUP_ARGS["ablate"])
        runs = alternate({"nanogpt": nanogpt, "ablate": ablate}, pairs)
    return {
        "data": sizes, "pairs": pairs, "runs": runs,
        "steps": steps_alone(checkout, step_rounds) if step_rounds else None,
        "median": {name: medians(rs) for name, rs in runs.items()},
        "paired": {key: paired_ratio(runs["nanogpt"], runs["ablate"], key) for key in PAIRED},
        "commands": {"nanogpt": " ".join([f"cd {checkout} && python train.py", *NANOGPT_ARGS, "--dataset=<prepared>",
                                          "--out_dir=<temporary>", *nanogpt_extra]),
                     "ablate": " ".join(["ablate-train", *ablate_extra])},
    }


def checkout_commit(path: Path) -> str | None:
    """The checkout's commit, where it is a git work tree."""
    try:
        return subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip() or None
    except (OSError, subprocess.CalledProcessError):
        return None

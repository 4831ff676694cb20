"""scripts/gpu-check, as far as a CPU can prove it: its steps at tiny sizes on the CPU (the side-by-side jobs
through the parallel launcher included), its report, its shell."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ablate.bench.machine import environment
from ablate.gpucheck import DRY_SIZE, bench_gpt2, markdown

ROOT = Path(__file__).parents[1]


@pytest.mark.slow
def test_gpt2_arms_run_on_the_cpu_and_make_a_report():
    result = bench_gpt2(torch.device("cpu"), DRY_SIZE, steps=1, warmup=1, compile=False)
    assert result["sizes"]["vocab_size"] == 50257 and result["sizes"]["vocab_padded"] == 50304
    for arm in ("ablate", "ablate_unpadded", "hf"):
        assert result[arm]["tokens_per_s"] > 0 and result[arm]["mfu"] is None  # no peak for a CPU
    assert result["ratio_ours_over_hf"] == pytest.approx(result["hf"]["ms_per_step"] / result["ablate"]["ms_per_step"])
    assert result["flops_per_token"] > 6 * result["sizes"]["n_params"]  # 6N plus attention
    jobs = {"steps": 10, "overrides": [], "rows": [
        {"jobs": 1, "returncode": 0, "wall_s": 9.0, "runs": 1, "completed": 1, "tokens_per_s_sum": 1000.0,
         "tokens_per_s_end_to_end": 500.0, "speedup_over_1_job": 1.0},
        {"jobs": 4, "returncode": 1, "wall_s": 3.0, "runs": 0, "error": "CUDA out of memory"},
    ]}
    report = {"command": "python -m ablate.gpucheck --dry-run", "date": "today", "dry_run": True,
              **environment(torch.device("cpu")), "gpt2": result, "jobs": jobs}
    text = markdown(report)
    assert "dry run on the CPU" in text and "| ablate_unpadded |" in text and "(ablate pads it to 50304)" in text
    assert f"**{result['ratio_ours_over_hf']:.2f}×**" in text
    assert "| 4 | 0 | failed: CUDA out of memory |" in text and "| 1 | 1 | 1,000 | 1.00× | 500 | 9 |" in text


def test_the_script_is_valid_shell_and_marks_its_cuda_tests():
    subprocess.run(["bash", "-n", str(ROOT / "scripts" / "gpu-check")], check=True)
    text = (ROOT / "tests" / "test_cuda.py").read_text()
    assert "pytest.mark.cuda" in text and "skipif(not torch.cuda.is_available()" in text


@pytest.mark.slow
def test_dry_run_end_to_end():
    proc = subprocess.run([str(ROOT / "scripts" / "gpu-check"), "--dry-run"], capture_output=True, text=True,
                          timeout=600, env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "## Small runs side by side" in proc.stdout and "4 skipped" in proc.stdout + proc.stderr
    # the side-by-side step really ran its jobs through the parallel launcher: 1 of 1, then 2 of 2, completed
    rows = re.findall(r"^\| (\d) \| (\d) \| ([\d,.]+) \|", proc.stdout, re.M)
    assert [(jobs, done) for jobs, done, _ in rows] == [("1", "1"), ("2", "2")], proc.stdout[-2000:]
    assert all(float(tokens.replace(",", "")) > 0 for _, _, tokens in rows)

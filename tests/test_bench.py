"""``ablate-bench --quick`` runs every measurement end to end and writes a complete report.

Its numbers come from a tiny model on a shared machine, so none is asserted; only their shape is."""

import json
import math
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ablate.bench import main, markdown
from ablate.bench.machine import others_cpu_use, peak_bf16
from ablate.registry import SLOTS

pytestmark = pytest.mark.slow  # real Lightning runs with offline wandb, like test_train.py; 15-20 s


def ratios(node: object, path: str = "") -> Iterator[tuple[str, object]]:
    """Every ``ratio*`` value in the report, with where it is."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for key, value in items:
        if isinstance(key, str) and key.startswith("ratio"):
            yield f"{path}.{key}", value
        yield from ratios(value, f"{path}.{key}")


def test_quick_benchmark_writes_a_complete_report(tmp_path):
    main(["--quick", "--out", str(tmp_path)])

    (json_path,) = tmp_path.glob("*.json")
    report = json.loads(json_path.read_text())
    markdown = json_path.with_suffix(".md").read_text()
    assert json_path.stem == report["device"] in ("cpu", "cuda")
    assert report["command"] == f"ablate-bench --quick --out {tmp_path}"
    assert f"`{report['command']}`" in markdown
    assert set(report["versions"]) == {"python", "torch", "lightning", "transformers", "ablate"}
    assert report["machine"]["cores"] >= 1 and report["machine"]["torch_threads"] >= 1
    assert report["matmul_flops_per_s"]["fp32"] > 0
    assert report["others_cpu_use_start"] is None or report["others_cpu_use_start"] >= 0
    assert "other processes' CPU use over 2 s" in markdown

    (size,) = report["sizes"].values()
    assert {"hf", "variants", "lightning", "flops"} <= set(size)
    assert "compile" not in size  # --quick skips it
    assert ("bf16" in size) == (report["device"] == "cpu")
    if report["versions"]["transformers"] != "not installed":
        assert size["hf"]["status"] == "ok"
        assert size["hf"]["attn_implementation"] in ("sdpa", "eager")
        # the same weights really are loaded (a GPU runs the quick size in bf16)
        assert size["hf"]["loss_diff_same_weights"] < (1e-4 if report["device"] == "cpu" else 5e-2)

    # every registered variant of every slot, once, and one baseline per slot
    registered = sorted((slot.name, name) for slot in SLOTS.values() for name in slot.names())
    assert sorted((row["slot"], row["variant"]) for row in size["variants"]) == registered
    assert sum(row["baseline"] for row in size["variants"]) == len(SLOTS)
    for row in size["variants"]:
        assert row["tokens_per_s"] > 0 and row["memory_bytes"] > 0, row

    for mode in ("with_eval", "no_periodic_eval"):
        for side in ("plain", "lightning"):
            assert size["lightning"][mode][side]["total_s"] > 0

    found = dict(ratios(report))
    assert len(found) >= 3 * len(registered)
    for path, value in found.items():
        assert isinstance(value, (int, float)) and math.isfinite(value) and value > 0, (path, value)


@pytest.mark.parametrize("gpu, peak", [
    ("NVIDIA H100 80GB HBM3", 989e12), ("NVIDIA H100 PCIe", 756e12), ("NVIDIA H100 NVL", 835e12),
    ("NVIDIA H200", 989e12), ("NVIDIA A100-SXM4-80GB", 312e12), ("Tesla T4", None),
])
def test_the_cards_bf16_peak_is_read_off_its_name(gpu, peak):
    assert peak_bf16(gpu) == peak


def test_a_gpu_report_states_mfu_and_the_allocators_memory():
    """The GPU report's own wording, rendered from the committed CPU report's numbers as a GPU run records
    them (no CPU bf16 section, MFU against the card's peak): the GPU path is written without a GPU here."""
    report = json.loads((Path(__file__).parents[1] / "reports" / "benchmarks" / "cpu.json").read_text())
    report |= {"device": "cuda", "machine": {**report["machine"], "gpu": "NVIDIA H100 80GB HBM3"}}
    sizes = report["sizes"]
    for s in sizes.values():
        s.pop("bf16")
        s["flops"].pop("bf16_fraction_of_bf16_matmul_rate")
        s["flops"] |= {"peak_flops": 989e12, "mfu": s["flops"]["flops_per_s"] / 989e12}
    text = markdown(report)
    assert "# ablate benchmark: cuda" in text and "GPU: NVIDIA H100 80GB HBM3" in text
    first = next(iter(sizes.values()))
    mfu = 100 * first["flops"]["mfu"]
    assert f"MFU {mfu:.1f}% of 989 TFLOP/s (bf16 dense peak)" in text
    assert "`torch.cuda.max_memory_allocated`'s rise during one step" in text
    assert "bf16 autocast on the CPU" not in text and "without attention, which it cannot count" not in text
    first["flops"] |= {"peak_flops": None, "mfu": None}
    assert "MFU unknown for this card (pass `--peak-flops`)" in markdown(report)


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/stat")
def test_the_quiet_machine_check_sees_other_processes_and_not_its_own():
    """The report's busy check counts another process's work, and not this process's own threads."""
    quiet = others_cpu_use(1.0)  # whatever else this machine runs (on a shared host, /proc/stat shows it too)
    spin = "import time\nend = time.perf_counter() + 3\nwhile time.perf_counter() < end: pass"
    child = subprocess.Popen([sys.executable, "-c", spin])
    try:
        time.sleep(0.5)  # the child has started spinning
        assert others_cpu_use(1.0) - quiet > 0.7  # one more busy core
    finally:
        child.wait(timeout=30)
    own = threading.Thread(target=_spin, args=(1.5,))
    own.start()
    try:
        assert others_cpu_use(1.0) - quiet < 0.3  # this process kept a core busy, but it is not another process
    finally:
        own.join()

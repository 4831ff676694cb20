"""``ablate.bench.markdown``: the report's wording, rendered from recorded numbers (no run)."""

import json
from pathlib import Path

from ablate.bench import markdown


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

"""``ablate-bench --quick`` runs every measurement end to end and writes a complete report.

Its numbers come from a tiny model on a shared machine, so none is asserted; only their shape is."""

import json
import math
from collections.abc import Iterator

import pytest
import torch

from ablate.bench import main
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
    capability = torch.backends.cpu.get_cpu_capability()
    assert report["machine"]["cpu_capability"] == capability and f"({capability} kernels)" in markdown
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

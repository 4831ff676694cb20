"""What only a GPU can show: flash attention for both attention scales, and the GPU defaults a run chooses and records.

Marked ``cuda``; ``scripts/gpu-check`` runs them on a GPU machine (``pytest -m cuda``). Without CUDA they skip."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf
from torch.nn.attention import SDPBackend, sdpa_kernel

from ablate.model import GPT, GPTConfig

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (scripts/gpu-check runs these)"),
]


@pytest.mark.parametrize("attn_scale", ["head_dim", "embed_size"])
def test_flash_attention_runs_for_both_attention_scales(attn_scale):
    """With only the flash backend allowed, SDPA raises if flash cannot run; the profiler names the kernel that did."""
    config = GPTConfig(vocab_size=50257, n_layer=2, n_head=12, n_embd=768, block_size=1024,
                       attn_scale={"name": attn_scale}, vocab_multiple=64)
    model = GPT(config).cuda()
    idx = torch.randint(0, 50257, (2, 1024), device="cuda")
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION), torch.autocast("cuda", dtype=torch.bfloat16):
            _, loss = model(idx, idx)
        loss.backward()
        torch.cuda.synchronize()
    kernels = [e.name.lower() for e in prof.key_averages()]
    assert any("flash" in k for k in kernels), kernels[:20]
    assert torch.isfinite(loss)


def test_default_run_on_a_gpu_chooses_and_records_the_gpu_defaults(compose_cfg, tmp_path):
    from ablate.train import run

    cfg = compose_cfg("data.tokenizer=gpt2", "model.n_layer=2", "model.n_embd=64", "model.n_head=4",
                      "model.block_size=64", "trainer.max_steps=20", "trainer.val_check_interval=10",
                      "trainer.enable_progress_bar=false", "logger.mode=disabled", "data.eval_batches=2")
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert resolved["trainer"]["precision"] == "bf16-mixed" and resolved["model"]["compile"] is True
    assert resolved["model"]["vocab_multiple"] == 64
    summary = run(cfg, tmp_path)
    assert summary["status"] == "completed"
    runtime = summary["runtime"]
    assert runtime["precision"] == "bf16-mixed" and runtime["tf32_matmul"] and runtime["fused_adamw"]
    assert runtime["compiled"] and runtime["vocab_padded"] == 50304 and runtime["sdpa"]["flash"]


def test_padded_vocabulary_loss_on_the_gpu_equals_the_unpadded_models():
    torch.manual_seed(0)
    small = GPT(GPTConfig(vocab_size=50257, n_layer=2, n_head=4, n_embd=64, block_size=64)).cuda()
    padded = GPT(GPTConfig(vocab_size=50257, n_layer=2, n_head=4, n_embd=64, block_size=64, vocab_multiple=64)).cuda()
    with torch.no_grad():
        for name, p in padded.state_dict().items():
            q = small.state_dict()[name]
            p[: q.shape[0]].copy_(q)  # the padded rows keep their random values: they must not matter
    idx = torch.randint(0, 50257, (4, 64), device="cuda")
    with torch.no_grad():
        torch.testing.assert_close(padded(idx, idx)[1], small(idx, idx)[1], atol=1e-5, rtol=0)

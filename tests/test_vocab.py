"""A padded vocabulary (``model.vocab_multiple``): wider tables, the same model; and the GPU defaults' resolution."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from ablate.convert import gpt2_from_state_dict
from ablate.errors import ConfigError
from ablate.gpu import cpu_name
from ablate.model import GPT, GPTConfig

ON_GPU = torch.cuda.is_available()


def padded_twin(model: GPT, multiple: int) -> GPT:
    """The same model with its vocabulary padded; the padded rows hold large values, so any leak shows."""
    config = GPTConfig(**{**model.config.__dict__, "vocab_multiple": multiple})
    padded = GPT(config).eval()
    state = model.state_dict()
    V = model.config.vocab_size
    with torch.no_grad():
        for name, p in padded.state_dict().items():
            if p.shape != state[name].shape:  # wte, lm_head: rows [0, V) are the model's, the rest junk
                p.copy_(torch.full_like(p, 30.0))
                p[:V].copy_(state[name])
            else:
                p.copy_(state[name])
    return padded


@pytest.mark.parametrize("preset", ["gpt2", "seed"])  # tied head; untied head with a bias
def test_padded_logits_are_excluded_so_loss_and_samples_are_the_unpadded_models(make_model, preset):
    model = make_model(f"model={preset}", vocab_size=65).eval()
    padded = padded_twin(model, 64)
    assert padded.transformer.wte.weight.shape[0] == padded.lm_head.weight.shape[0] == 128
    assert padded.num_params() == model.num_params()
    idx = torch.randint(0, 65, (3, 16))
    with torch.no_grad():
        logits, loss = model(idx, idx)
        logits_p, loss_p = padded(idx, idx)
    assert logits_p.shape == (3, 16, 65)
    torch.testing.assert_close(logits_p, logits, atol=1e-6, rtol=0)
    torch.testing.assert_close(loss_p, loss, atol=1e-6, rtol=0)
    # the junk rows would dominate if they were not cut off: the full padded head predicts only them
    with torch.no_grad():
        full = padded.lm_head(padded.transformer.ln_f(torch.zeros(1, 16)) + 1.0)
    assert full[:, 65:].min() > full[:, :65].max()
    samples = [
        m.generate(idx[:1, :4], 40, temperature=1.0, generator=torch.Generator().manual_seed(7)) for m in (model, padded)
    ]
    assert torch.equal(samples[0], samples[1]) and int(samples[1].max()) < 65


def test_a_training_step_never_moves_probability_onto_padded_ids(make_model):
    model = make_model("model=seed", vocab_size=50)
    padded = padded_twin(model, 64)
    idx = torch.randint(0, 50, (2, 16))
    _, loss = padded(idx, idx)
    loss.backward()
    assert padded.lm_head.weight.grad[50:].abs().sum() == 0 and padded.lm_head.weight.grad[:50].abs().sum() > 0


def test_gpt2_weights_load_into_a_padded_model():
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, n_positions=32, vocab_size=100,
                                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    hf = transformers.GPT2LMHeadModel(config).eval()
    ours = gpt2_from_state_dict(hf.state_dict(), n_head=4, vocab_multiple=64).eval()
    assert ours.config.padded_vocab_size == 128 and ours.lm_head.weight is ours.transformer.wte.weight
    assert ours.transformer.wte.weight[100:].abs().sum() == 0
    idx = torch.randint(0, 100, (2, 32))
    with torch.no_grad():
        torch.testing.assert_close(ours(idx)[0], hf(idx).logits, atol=1e-4, rtol=0)


def test_vocab_multiple_is_checked():
    assert GPTConfig(vocab_size=50257, vocab_multiple=64).padded_vocab_size == 50304
    assert GPTConfig(vocab_size=50257, vocab_multiple=None).padded_vocab_size == 50257
    assert GPTConfig(vocab_size=65, vocab_multiple=1).padded_vocab_size == 65
    with pytest.raises(ConfigError, match=r"model.vocab_multiple=0 must be a positive integer or null"):
        GPTConfig(vocab_size=65, vocab_multiple=0)


def test_gpu_defaults_resolve_to_the_cpu_settings_without_cuda(compose_cfg):
    """On a CPU the resolved config is what it was before the GPU defaults existed (so are its numbers);
    with CUDA, bf16 autocast, compile and 64-padding for GPT-2 BPE."""
    for tokenizer in ("char", "gpt2"):
        cfg = OmegaConf.to_container(compose_cfg(f"data.tokenizer={tokenizer}"), resolve=True)
        assert cfg["trainer"]["precision"] == ("bf16-mixed" if ON_GPU else "32-true")
        assert cfg["model"]["compile"] is ON_GPU
        assert cfg["model"]["vocab_multiple"] == (64 if ON_GPU and tokenizer == "gpt2" else None)
    explicit = OmegaConf.to_container(compose_cfg("model.vocab_multiple=8", "trainer.precision=32-true"), resolve=True)
    assert explicit["model"]["vocab_multiple"] == 8 and explicit["trainer"]["precision"] == "32-true"


def test_a_run_states_its_runtime_in_its_record(compose_cfg, tmp_path):
    from ablate.train import run

    cfg = compose_cfg("model.n_layer=1", "model.n_embd=16", "model.n_head=2", "model.block_size=16",
                      "trainer.max_steps=2", "trainer.val_check_interval=2", "trainer.enable_progress_bar=false",
                      "logger.mode=disabled", "data.eval_batches=1", "sample.max_new_tokens=2",
                      f"data.cache_dir={tmp_path / 'cache'}")
    summary = run(cfg, tmp_path / "run")
    runtime = summary["runtime"]
    assert runtime["vocab_size"] == runtime["vocab_padded"] == 65  # char level: never padded
    if not ON_GPU:  # the CPU settings the committed results were made with
        assert runtime == {"device": "cpu", "precision": "32-true", "tf32_matmul": False, "fused_adamw": False,
                           "compiled": False, "vocab_size": 65, "vocab_padded": 65,
                           # and the host: hosts of one model name differ in their kernels (AVX2, AVX512)
                           "cpu": cpu_name(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                           "threads": torch.get_num_threads()}

"""The two presets reproduce the models they are named after: ``gpt2`` matches Hugging Face's GPT-2 on
converted weights, and ``seed`` matches an independent re-implementation of the seed's ``GPT2`` class."""

import math

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from ablate.convert import GPT2_CHOICES, gpt2_from_state_dict, load_gpt2_weights
from ablate.errors import CheckpointError
from ablate.model import GPTConfig
from ablate.registry import SLOTS

transformers = pytest.importorskip("transformers")

HF_SIZES = dict(n_layer=2, n_embd=64, n_head=4, n_positions=32, vocab_size=100)
# The same sizes as overrides of the real composed config.
HF_OVERRIDES = ["model.n_layer=2", "model.n_embd=64", "model.n_head=4", "model.block_size=32"]


def _hf_gpt2(attn_implementation):
    """A small random Hugging Face GPT-2, its weights jittered so biases and norm gains are not trivial."""
    config = transformers.GPT2Config(
        **HF_SIZES,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=0,
        eos_token_id=0,
        attn_implementation=attn_implementation,
    )
    model = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


@pytest.fixture(scope="module")
def hf_state_dict():
    torch.manual_seed(0)
    return _hf_gpt2("eager").state_dict()


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
def test_gpt2_matches_hugging_face(attn_implementation):
    """Converted Hugging Face GPT-2 weights give the same logits in our model (float32, atol 1e-4)."""
    hf = _hf_gpt2(attn_implementation)
    assert hf.config._attn_implementation == attn_implementation
    ours = gpt2_from_state_dict(hf.state_dict(), n_head=HF_SIZES["n_head"]).eval()
    idx = torch.randint(0, HF_SIZES["vocab_size"], (3, HF_SIZES["n_positions"]))
    with torch.no_grad():
        expected = hf(idx).logits
        for length in (HF_SIZES["n_positions"], 7):
            logits, _ = ours(idx[:, :length])
            torch.testing.assert_close(logits, expected[:, :length], atol=1e-4, rtol=0)
    assert expected.abs().max() > 1.0  # the logits are not near zero, so the tolerance is meaningful


def test_converted_model_is_the_gpt2_preset(compose_cfg, hf_state_dict):
    """The converted model makes the same choices as the composed ``model=gpt2`` preset and ties its head."""
    preset = OmegaConf.to_container(compose_cfg("model=gpt2").model, resolve=True)
    preset_cfg = GPTConfig.from_dict(preset, vocab_size=HF_SIZES["vocab_size"])
    ours = gpt2_from_state_dict(hf_state_dict, n_head=HF_SIZES["n_head"])
    assert ours.config.choices() == preset_cfg.choices()
    for flag in ("bias", "tie_embeddings", "lm_head_bias", "dropout", "attn_dropout"):
        assert getattr(ours.config, flag) == getattr(preset_cfg, flag), flag
    assert (ours.config.n_layer, ours.config.n_head, ours.config.n_embd, ours.config.block_size) == (2, 4, 64, 32)
    assert ours.lm_head.weight is ours.transformer.wte.weight
    assert ours.lm_head.bias is None
    assert ours.transformer.h[0].ln_1.eps == 1e-5  # GPT-2's layer_norm_epsilon
    torch.testing.assert_close(ours.transformer.wte.weight, hf_state_dict["transformer.wte.weight"], atol=0, rtol=0)


MISMATCHED = [(slot, name) for slot, choice in GPT2_CHOICES.items() for name in SLOTS[slot].names() if name != choice]


@pytest.mark.parametrize(("slot", "variant"), MISMATCHED, ids=[f"{s}={v}" for s, v in MISMATCHED])
def test_gpt2_weights_refuse_an_incompatible_slot(make_model, hf_state_dict, slot, variant):
    """Loading GPT-2 weights into a model whose slot GPT-2's weights do not fit names that slot."""
    model = make_model(*HF_OVERRIDES, f"model/{slot}={variant}", vocab_size=HF_SIZES["vocab_size"])
    expected = rf"GPT-2 weights need model/{slot}={GPT2_CHOICES[slot]}, not {variant}"
    with pytest.raises(CheckpointError, match=expected):
        load_gpt2_weights(model, hf_state_dict)


def test_gpt2_weights_refuse_other_sizes(make_model, hf_state_dict):
    """A width or vocabulary that differs from the checkpoint's is refused with both shapes named."""
    narrow = make_model("model=gpt2", vocab_size=HF_SIZES["vocab_size"])  # the tiny n_embd=16
    with pytest.raises(CheckpointError, match=r"transformer\.wte\.weight has shape \(100, 64\), the model \(100, 16\)"):
        load_gpt2_weights(narrow, hf_state_dict)
    short = make_model(*HF_OVERRIDES, "model.block_size=16", vocab_size=HF_SIZES["vocab_size"])
    with pytest.raises(CheckpointError, match=r"transformer\.wpe\.weight has shape \(32, 64\), the model \(16, 64\)"):
        load_gpt2_weights(short, hf_state_dict)
    deeper = make_model(*HF_OVERRIDES, "model.n_layer=3", vocab_size=HF_SIZES["vocab_size"])
    with pytest.raises(CheckpointError, match=r"the GPT-2 weights have 2 layers, the model model.n_layer=3"):
        load_gpt2_weights(deeper, hf_state_dict)


def test_gpt2_weights_with_more_layers_name_the_layer_count(make_model, hf_state_dict):
    """A checkpoint deeper than the model is refused with a message about n_layer, not about model.bias."""
    shallow = make_model(*HF_OVERRIDES, "model.n_layer=1", vocab_size=HF_SIZES["vocab_size"])
    with pytest.raises(CheckpointError) as info:
        load_gpt2_weights(shallow, hf_state_dict)
    assert "n_layer" in str(info.value)
    assert "bias" not in str(info.value)


def test_gpt2_weights_refuse_a_bias_free_model(make_model, hf_state_dict):
    """GPT-2 has biases; a model.bias=false model cannot hold them and the message says so."""
    model = make_model(*HF_OVERRIDES, "model.bias=false", vocab_size=HF_SIZES["vocab_size"])
    with pytest.raises(CheckpointError, match=r"needs model\.bias=true"):
        load_gpt2_weights(model, hf_state_dict)


# --- the seed's GPT2, re-implemented independently from its description ------------------------------


class SeedAttention(nn.Module):
    """Heads first, then one bias-free head_dim→head_dim map each for q, k, v shared by every head;
    scores scaled by 1/sqrt(embed_size); causal; an output projection with a bias."""

    def __init__(self, width, heads):
        super().__init__()
        self.width, self.heads = width, heads
        size = width // heads
        self.query = nn.Linear(size, size, bias=False)
        self.key = nn.Linear(size, size, bias=False)
        self.value = nn.Linear(size, size, bias=False)
        self.out = nn.Linear(width, width)

    def forward(self, h):
        length = h.size(1)
        size = self.width // self.heads
        future = torch.ones(length, length, dtype=torch.bool).triu(1)
        heads = []
        for j in range(self.heads):  # one head at a time, on its slice of the stream
            piece = h[..., j * size : (j + 1) * size]
            q, k, v = self.query(piece), self.key(piece), self.value(piece)
            energy = torch.einsum("bid,bjd->bij", q, k) / math.sqrt(self.width)
            weights = energy.masked_fill(future, float("-inf")).softmax(dim=-1)
            heads.append(torch.einsum("bij,bjd->bid", weights, v))
        return self.out(torch.cat(heads, dim=-1))


class SeedBlock(nn.Module):
    """Post-norm: h = drop(norm1(attn(h) + h)); out = drop(norm2(ff(h) + h)); ReLU MLP, expansion 4."""

    def __init__(self, width, heads, dropout):
        super().__init__()
        self.attention = SeedAttention(width, heads)
        self.norm1 = nn.LayerNorm(width)
        self.norm2 = nn.LayerNorm(width)
        self.up = nn.Linear(width, 4 * width)
        self.down = nn.Linear(4 * width, width)
        self.drop = nn.Dropout(dropout)

    def forward(self, h):
        h = self.drop(self.norm1(self.attention(h) + h))
        return self.drop(self.norm2(self.down(torch.relu(self.up(h))) + h))


class SeedLM(nn.Module):
    """Token + learned position embeddings with dropout, post-norm blocks, an untied output layer with a bias."""

    def __init__(self, vocab, width, heads, depth, max_length, dropout=0.0):
        super().__init__()
        self.tokens = nn.Embedding(vocab, width)
        self.positions = nn.Embedding(max_length, width)
        self.blocks = nn.ModuleList(SeedBlock(width, heads, dropout) for _ in range(depth))
        self.head = nn.Linear(width, vocab)
        self.drop = nn.Dropout(dropout)

    def forward(self, idx):
        steps = torch.arange(idx.size(1))
        h = self.drop(self.tokens(idx) + self.positions(steps).unsqueeze(0))
        for block in self.blocks:
            h = block(h)
        return self.head(h)


def _seed_names(n_layer):
    """Our parameter name → the reference's, for every parameter of either model."""
    names = {
        "transformer.wte.weight": "tokens.weight",
        "transformer.wpe.weight": "positions.weight",
        "lm_head.weight": "head.weight",
        "lm_head.bias": "head.bias",
    }
    per_block = {
        "attn.c_attn.q.weight": "attention.query.weight",
        "attn.c_attn.k.weight": "attention.key.weight",
        "attn.c_attn.v.weight": "attention.value.weight",
        "attn.c_proj.weight": "attention.out.weight",
        "attn.c_proj.bias": "attention.out.bias",
        "ln_1.weight": "norm1.weight",
        "ln_1.bias": "norm1.bias",
        "ln_2.weight": "norm2.weight",
        "ln_2.bias": "norm2.bias",
        "mlp.c_fc.weight": "up.weight",
        "mlp.c_fc.bias": "up.bias",
        "mlp.c_proj.weight": "down.weight",
        "mlp.c_proj.bias": "down.bias",
    }
    for i in range(n_layer):
        names.update({f"transformer.h.{i}.{ours}": f"blocks.{i}.{ref}" for ours, ref in per_block.items()})
    return names


def test_seed_preset_matches_an_independent_seed_model(make_model):
    """The composed ``model=seed`` preset computes exactly the seed's GPT2 (with a causal mask)."""
    ours = make_model("model=seed", "model.n_head=4", "model.n_layer=3").eval()
    cfg = ours.config
    assert not cfg.tie_embeddings and cfg.lm_head_bias
    with torch.no_grad():
        for p in ours.parameters():  # move norm gains and biases off their trivial init
            p.add_(0.1 * torch.randn_like(p))
    ref = SeedLM(cfg.vocab_size, cfg.n_embd, cfg.n_head, cfg.n_layer, cfg.block_size).eval()
    names = _seed_names(cfg.n_layer)
    ours_sd = ours.state_dict()
    assert set(names) == set(ours_sd)
    assert set(names.values()) == set(ref.state_dict())
    ref.load_state_dict({names[k]: v for k, v in ours_sd.items()}, strict=True)

    idx = torch.randint(0, cfg.vocab_size, (3, cfg.block_size))
    with torch.no_grad():
        expected = ref(idx)
        logits, _ = ours(idx)
        torch.testing.assert_close(logits, expected, atol=1e-5, rtol=0)
        assert expected.std() > 0.1
        # The comparison can tell the seed's 1/sqrt(embed_size) from GPT-2's 1/sqrt(head_dim).
        for block in ours.transformer.h:
            block.attn.scale = (cfg.n_embd // cfg.n_head) ** -0.5
        assert not torch.allclose(ours(idx)[0], expected, atol=1e-3)

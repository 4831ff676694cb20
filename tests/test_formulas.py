"""Each variant computes the formula it is named after, checked against a plain re-derivation."""

import math

import pytest
import torch
import torch.nn.functional as F

from ablate.components.positional import NoPositional, sinusoidal_table
from ablate.components.slots import layernorm
from ablate.errors import ConfigError

# --- positional ---------------------------------------------------------------------------------------


def _plain_sinusoid(length, dim):
    table = [[0.0] * dim for _ in range(length)]
    for pos in range(length):
        for j in range(dim):
            two_i = j - j % 2
            angle = pos / 10000 ** (two_i / dim)
            table[pos][j] = math.sin(angle) if j % 2 == 0 else math.cos(angle)
    return torch.tensor(table, dtype=torch.float32)


@pytest.mark.parametrize(("length", "dim"), [(50, 8), (33, 7), (5, 1)])
def test_sinusoidal_table_is_the_papers_formula(length, dim):
    """PE[pos, 2i] = sin(pos / 10000^(2i/d)), PE[pos, 2i+1] = cos(same), odd d included."""
    table = sinusoidal_table(length, dim)
    assert table.shape == (length, dim)
    torch.testing.assert_close(table, _plain_sinusoid(length, dim), atol=1e-6, rtol=0)


def test_sinusoidal_positional_adds_the_table_by_position(make_model):
    """With batch-first input (B=3 != T=5) every batch row gets the same per-position offsets
    (the seed indexed the table by the batch axis)."""
    wpe = make_model("model/positional=sinusoidal").transformer.wpe
    n_embd = wpe.n_embd
    x = torch.randn(3, 5, n_embd)
    added = wpe(x) - x
    for row in added:
        torch.testing.assert_close(row, sinusoidal_table(5, n_embd), atol=1e-6, rtol=0)
    assert not torch.allclose(added[:, 0], added[:, 1])  # positions 0 and 1 get different offsets


def test_sinusoidal_scale_matches_the_table_to_gpt2s_embedding_size(make_model):
    """scale=0.0283 (0.02·√2) gives the table the RMS of GPT-2's N(0, 0.02) embeddings; the default adds it as the paper wrote it."""
    scaled = make_model("model/positional=sinusoidal", "model.positional.scale=0.0283")
    wpe = scaled.transformer.wpe
    x = torch.zeros(1, 64, wpe.n_embd)
    torch.testing.assert_close(wpe(x)[0], 0.0283 * sinusoidal_table(64, wpe.n_embd), atol=1e-7, rtol=0)
    rms = wpe(x).pow(2).mean().sqrt().item()
    assert rms == pytest.approx(0.02, rel=0.01)
    assert scaled.transformer.wte.weight.std().item() == pytest.approx(0.02, rel=0.05)  # what the table is added to
    plain = make_model("model/positional=sinusoidal").transformer.wpe
    assert plain(x).pow(2).mean().sqrt().item() == pytest.approx(2**-0.5, rel=0.01)


def test_sinusoidal_positional_extends_past_block_size(make_model):
    """A sequence longer than block_size gets the table extended, sinusoidal_table(T, d), and the model runs."""
    model = make_model("model/positional=sinusoidal")
    wpe, block_size = model.transformer.wpe, model.config.block_size
    T = block_size + 9
    x = torch.zeros(2, T, wpe.n_embd)
    torch.testing.assert_close(wpe(x), sinusoidal_table(T, wpe.n_embd).expand(2, T, -1), atol=1e-6, rtol=0)
    logits, _ = model(torch.randint(0, model.config.vocab_size, (2, T)))
    assert logits.shape == (2, T, model.config.vocab_size)


def test_learned_positional_refuses_a_sequence_longer_than_its_table(make_model):
    """The full model's forward raises ConfigError naming the length and the table size; block_size is fine."""
    model = make_model("model/positional=learned")
    block_size, vocab = model.config.block_size, model.config.vocab_size
    logits, _ = model(torch.randint(0, vocab, (2, block_size)))
    assert logits.shape[1] == block_size
    with pytest.raises(ConfigError, match=rf"sequence length {block_size + 1} .*\({block_size} positions\)"):
        model(torch.randint(0, vocab, (2, block_size + 1)))


# --- layer norms --------------------------------------------------------------------------------------


def _norm_input(dim):
    x = torch.randn(4, 3, dim) * 3 + 1
    # tiny spread around 0: here eps enters the formula (std ~1e-4 against eps 1e-6), and float32 can
    # hold the row without cancelling digits (around 0.5, x - mean would keep only ~3 of them)
    x[0, 0] = 1e-4 * torch.randn(dim)
    return x


def _randomise(norm):
    with torch.no_grad():
        norm.weight.copy_(torch.randn_like(norm.weight))
        norm.bias.copy_(torch.randn_like(norm.bias))
    return norm


def test_custom_layernorm_is_the_seeds_formula(make_model):
    """custom = gamma * (x - mean) / (std_unbiased + eps) + beta, with eps 1e-6 by default."""
    norm = _randomise(make_model("model/layernorm=custom").transformer.h[0].ln_1)
    assert layernorm.get("custom").params["eps"] == 1e-6
    assert norm.eps == 1e-6
    dim = norm.weight.numel()
    x = _norm_input(dim)
    x64, weight, bias = x.double(), norm.weight.double(), norm.bias.double()  # the formula, exactly
    mean = x64.sum(-1, keepdim=True) / dim
    std = (((x64 - mean) ** 2).sum(-1, keepdim=True) / (dim - 1)).sqrt()
    expected = weight * (x64 - mean) / (std + 1e-6) + bias
    torch.testing.assert_close(norm(x).double(), expected, atol=1e-5, rtol=1e-5)
    # eps matters in the tiny-spread row: 1e-5 instead of 1e-6 is 10% of its std
    assert not torch.allclose(norm(x)[0, 0].double(), (weight * (x64 - mean) / (std + 1e-5) + bias)[0, 0], atol=1e-3)
    # the biased variance inside the sqrt (the torch variant's formula) is measurably different
    biased = F.layer_norm(x, (dim,), norm.weight, norm.bias, 1e-6)
    assert not torch.allclose(norm(x), biased, atol=1e-3)


def _seed_chain(x, weight, bias, eps):
    """The seed's layer norm as separate tensor ops; autograd differentiates it op by op."""
    xc = x - x.mean(-1, keepdim=True)
    return weight * xc / (xc.square().sum(-1, keepdim=True) / (x.size(-1) - 1)).sqrt().add(eps) + bias


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("eps", [1e-6, 0.5])
def test_custom_layernorms_gradients_are_autograds_through_the_seeds_chain(make_model, bias, eps):
    """The fused kernels' backward (rstd scaled by sqrt(k·f), the gradient by sqrt(f/k)) gives the
    gradients autograd finds through the seed's chain, for x, weight and bias, in float64; a large eps
    makes the per-row factor f's own gradient term large, so a dropped term would show."""
    norm = make_model("model/layernorm=custom", f"model.bias={bias}").transformer.h[0].ln_1.double()
    norm.eps = eps
    if bias:
        _randomise(norm)
    x = _norm_input(norm.weight.numel()).double().requires_grad_()
    grad = torch.randn_like(x)
    ours = torch.autograd.grad(norm(x), [x, *norm.parameters()], grad)
    expected = torch.autograd.grad(_seed_chain(x, norm.weight, 0 if norm.bias is None else norm.bias, eps),
                                   [x, *norm.parameters()], grad)
    assert len(ours) == (3 if bias else 2)
    for got, want in zip(ours, expected, strict=True):
        torch.testing.assert_close(got, want, atol=1e-10, rtol=1e-10)
    assert torch.autograd.gradcheck(lambda x: norm(x), (x[:2, :2],))


def test_custom_layernorm_of_a_constant_row_is_its_bias_with_finite_gradients(make_model):
    """A row with no spread has x - mean = 0: the seed's formula gives 0 · weight + bias (eps keeps the
    division finite), and so must the fused version, whose kernel is called with a variance eps of 1e-30."""
    norm = _randomise(make_model("model/layernorm=custom").transformer.h[0].ln_1)
    x = torch.full((2, 3, norm.weight.numel()), 0.75, requires_grad=True)
    y = norm(x)
    torch.testing.assert_close(y, norm.bias.expand_as(y).detach(), atol=1e-6, rtol=0)
    y.square().sum().backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(norm.weight.grad).all()


def test_torch_layernorm_is_torchs_with_eps_1e5(make_model):
    """torch = F.layer_norm with eps 1e-5 (GPT-2's), with non-trivial weight and bias."""
    norm = _randomise(make_model("model/layernorm=torch").transformer.h[0].ln_1)
    assert norm.eps == 1e-5
    dim = norm.weight.numel()
    x = _norm_input(dim)
    expected = F.layer_norm(x, (dim,), norm.weight, norm.bias, eps=1e-5)
    torch.testing.assert_close(norm(x), expected, atol=1e-6, rtol=1e-6)
    assert not torch.allclose(norm(x)[0, 0], F.layer_norm(x, (dim,), norm.weight, norm.bias, eps=1e-6)[0, 0])


# --- attention ----------------------------------------------------------------------------------------

SCALES = {
    "head_dim": lambda n_embd, n_head: (n_embd // n_head) ** -0.5,
    "embed_size": lambda n_embd, n_head: n_embd**-0.5,
}


def _fused_qkv(attn, x, n_head):
    """GPT-2's c_attn: one C→3C map, split into q, k, v, then into heads."""
    B, T, C = x.shape
    q, k, v = (x @ attn.c_attn.weight.T + attn.c_attn.bias).split(C, dim=-1)
    return [t.reshape(B, T, n_head, C // n_head).transpose(1, 2) for t in (q, k, v)]


def _per_head_shared_qkv(attn, x, n_head):
    """The seed's: split into heads first, then the same hs→hs map for every head."""
    B, T, C = x.shape
    heads = x.reshape(B, T, n_head, C // n_head).transpose(1, 2)
    return [heads @ w.T for w in (attn.c_attn.q.weight, attn.c_attn.k.weight, attn.c_attn.v.weight)]


QKV = {"fused": _fused_qkv, "per_head_shared": _per_head_shared_qkv}


def _reference_attention(attn, x, n_head, project, scale):
    B, T, C = x.shape
    q, k, v = project(attn, x, n_head)
    scores = q @ k.transpose(-2, -1) * scale
    scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    y = scores.softmax(dim=-1) @ v  # (B, nh, T, hs)
    y = y.transpose(1, 2).reshape(B, T, C)
    return y @ attn.c_proj.weight.T + attn.c_proj.bias


@pytest.mark.parametrize("qkv", list(QKV))
@pytest.mark.parametrize("scale", list(SCALES))
def test_attention_is_scaled_masked_softmax(make_model, scale, qkv):
    """softmax(q k^T · scale, causal) v, heads merged, c_proj; the scale is exactly its formula."""
    model = make_model(f"model/attn_scale={scale}", f"model/qkv={qkv}", "model.n_head=4")
    cfg = model.config
    attn = model.transformer.h[0].attn
    assert attn.scale == SCALES[scale](cfg.n_embd, cfg.n_head)
    assert attn.scale == {"head_dim": 0.5, "embed_size": 0.25}[scale]  # n_embd 16, 4 heads: hs 4
    with torch.no_grad():
        for p in attn.parameters():  # large enough weights that the softmax is far from uniform
            p.copy_(torch.randn_like(p))
    x = torch.randn(2, 7, cfg.n_embd)
    pos = NoPositional(cfg.n_embd, cfg.n_head, cfg.block_size)
    with torch.no_grad():
        out = attn(x, pos)
        torch.testing.assert_close(out, _reference_attention(attn, x, cfg.n_head, QKV[qkv], attn.scale))
        other = SCALES["embed_size" if scale == "head_dim" else "head_dim"](cfg.n_embd, cfg.n_head)
        assert not torch.allclose(out, _reference_attention(attn, x, cfg.n_head, QKV[qkv], other), atol=1e-3)


# --- activations --------------------------------------------------------------------------------------

ACTIVATIONS = {
    "relu": lambda v: max(v, 0.0),
    "gelu": lambda v: v * 0.5 * (1 + math.erf(v / math.sqrt(2))),
    "gelu_tanh": lambda v: 0.5 * v * (1 + math.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v**3))),
}
GRID = torch.linspace(-6, 6, 1201, dtype=torch.float64)


def _act(make_model, name):
    return make_model(f"model/activation={name}").transformer.h[0].mlp.act


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_formula(make_model, name):
    """relu = max(x, 0); gelu = x·Φ(x) through erf; gelu_tanh = GPT-2's tanh approximation."""
    expected = torch.tensor([ACTIVATIONS[name](v) for v in GRID.tolist()], dtype=torch.float64)
    torch.testing.assert_close(_act(make_model, name)(GRID), expected, atol=1e-12, rtol=1e-12)


def test_gelu_and_gelu_tanh_differ(make_model):
    """The exact GELU and the tanh approximation are two variants, not one under two names."""
    gap = (_act(make_model, "gelu")(GRID) - _act(make_model, "gelu_tanh")(GRID)).abs().max()
    assert gap > 1e-5


# --- initialisation -----------------------------------------------------------------------------------

MODERATE = ["model.n_layer=8", "model.n_head=8", "model.n_embd=256", "model.block_size=64"]


def _close(value, target, rel=0.1):
    return abs(value - target) <= rel * target


def test_gpt2_init(make_model):
    """Linear and embedding weights N(0, 0.02), residual projections N(0, 0.02/sqrt(2L)), biases 0."""
    model = make_model("model=gpt2", *MODERATE, vocab_size=1000)
    n_layer = model.config.n_layer
    resid = 0.02 / math.sqrt(2 * n_layer)
    assert resid < 0.006  # far enough from 0.02 that the two cases are told apart
    for i, block in enumerate(model.transformer.h):
        for name, layer, std in [
            ("attn.c_attn", block.attn.c_attn, 0.02),
            ("mlp.c_fc", block.mlp.c_fc, 0.02),
            ("attn.c_proj", block.attn.c_proj, resid),
            ("mlp.c_proj", block.mlp.c_proj, resid),
        ]:
            assert _close(layer.weight.std().item(), std), (i, name, layer.weight.std().item(), std)
            assert torch.count_nonzero(layer.bias) == 0, (i, name)
    for name in ("wte", "wpe"):
        std = model.transformer[name].weight.std().item()
        assert _close(std, 0.02), (name, std)


def test_torch_default_init_keeps_pytorchs(make_model):
    """torch_default leaves nn.Embedding's N(0, 1) on wte and nn.Linear's Kaiming-uniform (std 1/sqrt(3·fan_in))."""
    model = make_model("model/init=torch_default", *MODERATE, vocab_size=1000)
    assert _close(model.transformer.wte.weight.std().item(), 1.0)
    c_fc = model.transformer.h[0].mlp.c_fc
    assert _close(c_fc.weight.std().item(), 1 / math.sqrt(3 * c_fc.in_features))
    assert torch.count_nonzero(c_fc.bias) > 0  # Linear's default bias is uniform, not zero

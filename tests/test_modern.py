"""The modern variants (rotary, ALiBi, RMSNorm, gated MLPs, q/k norm, parallel blocks) compute the formulas
they are named after, checked against plain re-derivations; the ``modern`` preset and the
``gpt2_to_modern`` sweep are what they say."""

import math

import pytest
import torch
from omegaconf import OmegaConf

from ablate.components.positional import NoPositional, alibi_slopes
from ablate.components.slots import layernorm, mlp, positional, qk_norm
from ablate.config import preset_choices, sweeps_dir
from ablate.errors import ConfigError
from ablate.model import GPTConfig
from ablate.registry import SLOTS


def _randomise(module, scale=1.0):
    """Every parameter N(0, scale²), so gains and biases are far from their trivial init."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(scale * torch.randn_like(p))
    return module


def _rms(t):
    return t.pow(2).mean(-1).sqrt()


def _fused_qkv(attn, x, n_head):
    """GPT-2's c_attn by hand: one C→3C map, split into q, k, v, then into heads ``(B, nh, T, hs)``."""
    B, T, C = x.shape
    q, k, v = (x @ attn.c_attn.weight.T + attn.c_attn.bias).split(C, dim=-1)  # each (B, T, C)
    return [t.reshape(B, T, n_head, C // n_head).transpose(1, 2) for t in (q, k, v)]  # each (B, nh, T, hs)


def _attend(attn, q, k, v, bias=None):
    """softmax(q kᵀ · scale + bias, causal) v, heads merged, then c_proj, all by hand."""
    B, nh, T, hs = q.shape
    scores = q @ k.transpose(-2, -1) * attn.scale  # (B, nh, T, T)
    if bias is not None:
        scores = scores + bias  # (nh, T, T) broadcast over the batch
    scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    y = (scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(B, T, nh * hs)  # heads side by side
    return y @ attn.c_proj.weight.T + attn.c_proj.bias


def _prefix_consistent(model, T):
    """The model runs on T tokens, and its logits on the first block_size of them equal those of the
    first block_size tokens alone: positions past block_size extend the encoding, they change nothing before."""
    idx = torch.randint(0, model.config.vocab_size, (2, T))
    with torch.no_grad():
        long, _ = model.eval()(idx)
        short, _ = model(idx[:, : model.config.block_size])
    assert long.shape == (2, T, model.config.vocab_size)
    torch.testing.assert_close(long[:, : model.config.block_size], short, atol=1e-5, rtol=0)


# --- rotary -------------------------------------------------------------------------------------------


def _reference_rope(x, base=10000.0):
    """RoPE as complex multiplication: the channel pair (i, i + hs/2) is the complex number
    x_i + j·x_{i+hs/2}, multiplied by e^{j·t·θ_i} at position t, with θ_i = base^(-2i/hs)."""
    *_, T, hs = x.shape
    half = hs // 2
    theta = base ** (-2 * torch.arange(half, dtype=torch.float64) / hs)
    angle = torch.arange(T, dtype=torch.float64).unsqueeze(1) * theta  # (T, half)
    z = torch.complex(x[..., :half].double(), x[..., half:].double()) * torch.polar(torch.ones_like(angle), angle)
    return torch.cat([z.real, z.imag], dim=-1).float()


def test_rotary_dot_product_depends_only_on_the_distance(make_model):
    """Rotating the same q and k to every position: q_m·k_n is the same for every (m, n) with the same
    n − m, also past block_size, and differs between distances."""
    wpe = make_model("model/positional=rotary").transformer.wpe
    hs, T = wpe.head_size, 40  # block_size is 16: the last 24 positions are computed on the fly
    q_vec, k_vec = torch.randn(hs), torch.randn(hs)
    q_vec, k_vec = q_vec / q_vec.norm(), k_vec / k_vec.norm()
    q, k = wpe.rotate(q_vec.expand(1, 1, T, hs), k_vec.expand(1, 1, T, hs))
    dots = q[0, 0] @ k[0, 0].T  # (T, T): dots[m, n] = q_m · k_n
    for offset in range(-T + 1, T):
        diagonal = torch.diagonal(dots, offset)  # every (m, m + offset)
        torch.testing.assert_close(diagonal, diagonal[0].expand_as(diagonal), atol=1e-5, rtol=0)
    assert not torch.allclose(dots[0, 0], dots[0, 3], atol=1e-3)
    torch.testing.assert_close(dots[0, 0], q_vec @ k_vec)  # position 0 is not rotated


@pytest.mark.parametrize("base", [10000.0, 500.0])
def test_rotary_matches_a_reference_rope(make_model, base):
    """rotate(q, k) is the complex-number RoPE on random q and k, with base a parameter, within and past block_size."""
    model = make_model("model/positional=rotary", f"model.positional.base={base}")
    wpe = model.transformer.wpe
    assert wpe.base == base
    for T in (model.config.block_size, model.config.block_size + 9):
        q, k = torch.randn(2, 2, T, wpe.head_size), torch.randn(2, 2, T, wpe.head_size)
        rq, rk = wpe.rotate(q, k)
        torch.testing.assert_close(rq, _reference_rope(q, base), atol=1e-5, rtol=0)
        torch.testing.assert_close(rk, _reference_rope(k, base), atol=1e-5, rtol=0)
        other = 10000.0 if base != 10000.0 else 500.0
        assert not torch.allclose(rq, _reference_rope(q, other), atol=1e-3)


def test_rotary_works_past_block_size_and_stores_nothing(make_model):
    """The full model runs past block_size consistently; the cos/sin cache is not in the state dict."""
    model = make_model("model/positional=rotary")
    assert model.transformer.wpe.cos.shape == (model.config.block_size, model.transformer.wpe.head_size // 2)
    assert not any(k.startswith("transformer.wpe") for k in model.state_dict())
    _prefix_consistent(model, model.config.block_size + 11)


def test_rotary_refuses_an_odd_head_size(make_model):
    with pytest.raises(ConfigError, match=r"even head size; model.n_embd=15 / model.n_head=3 = 5"):
        make_model("model/positional=rotary", "model.n_embd=15", "model.n_head=3")


# --- ALiBi --------------------------------------------------------------------------------------------


def _paper_slopes(n):
    """The ALiBi paper's reference code (ofirpress/attention_with_linear_biases), transcribed."""

    def power_of_2(n):
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        return [start * start**i for i in range(n)]

    if math.log2(n).is_integer():
        return power_of_2(n)
    closest = 2 ** math.floor(math.log2(n))
    return power_of_2(closest) + _paper_slopes(2 * closest)[0::2][: n - closest]


def test_alibi_slopes_for_a_power_of_two_are_the_papers():
    """n_head = 8: 1/2, 1/4, ..., 1/256, exactly."""
    assert alibi_slopes(8) == [1 / 2**i for i in range(1, 9)]
    assert alibi_slopes(4) == [1 / 4, 1 / 16, 1 / 64, 1 / 256]


@pytest.mark.parametrize("n_head", [1, 2, 3, 5, 6, 12, 16, 24])
def test_alibi_slopes_match_the_reference_code(n_head):
    """Power-of-two and interpolated (non-power-of-two) head counts give the reference code's slopes."""
    assert alibi_slopes(n_head) == pytest.approx(_paper_slopes(n_head), rel=1e-12)
    assert len(alibi_slopes(n_head)) == n_head


def test_alibi_slopes_for_six_heads_interleave():
    """6 heads: the 4-head slopes, then every other 8-head slope (1/2, 1/8)."""
    assert alibi_slopes(6) == pytest.approx([1 / 4, 1 / 16, 1 / 64, 1 / 256, 1 / 2, 1 / 8], rel=1e-12)


@pytest.mark.parametrize("n_head", [4, 2])
def test_alibi_attention_is_softmax_with_a_linear_distance_bias(make_model, n_head):
    """attn(x) = softmax(q kᵀ · scale + slope_h · (j − i), causal) v, and attention_probs agrees."""
    model = make_model("model/positional=alibi", f"model.n_head={n_head}")
    attn, wpe, C = model.transformer.h[0].attn, model.transformer.wpe, model.config.n_embd
    _randomise(attn, scale=0.5)  # logits of a few units: a peaked softmax, outputs of order 1
    x = torch.randn(2, 9, C)
    q, k, v = _fused_qkv(attn, x, n_head)
    T = x.size(1)
    i, j = torch.arange(T).unsqueeze(1), torch.arange(T).unsqueeze(0)
    slopes = torch.tensor(_paper_slopes(n_head)).view(n_head, 1, 1)  # (nh, 1, 1) against (T, T) distances
    with torch.no_grad():
        out = attn(x, wpe)
        torch.testing.assert_close(out, _attend(attn, q, k, v, slopes * (j - i)), atol=1e-5, rtol=0)
        assert not torch.allclose(out, _attend(attn, q, k, v), atol=1e-3)  # the bias matters here
        probs = attn.attention_probs(x, wpe)
    scores = q @ k.transpose(-2, -1) * attn.scale + slopes * (j - i)
    expected = scores.masked_fill(j > i, float("-inf")).softmax(-1)
    torch.testing.assert_close(probs, expected, atol=1e-5, rtol=0)


def test_alibi_works_past_block_size(make_model):
    """No table to run out of: the model runs past block_size, consistently with the shorter input."""
    model = make_model("model/positional=alibi")
    bias = model.transformer.wpe.attn_bias(40, torch.device("cpu"), torch.float32)
    assert bias.shape == (2, 40, 40)
    assert bias[0, 39, 0] == -39 * 2**-4 and bias[1, 39, 0] == -39 * 2**-8 and bias[0, 0, 39] == float("-inf")
    _prefix_consistent(model, model.config.block_size + 11)


def test_only_alibi_builds_a_mask():
    """Every other positional variant returns no bias, so attention stays on SDPA's is_causal=True path."""
    with_bias = [
        name
        for name in positional.names()
        if positional.build(name, 16, 2, 16).attn_bias(8, torch.device("cpu"), torch.float32) is not None
    ]
    assert with_bias == ["alibi"]
    assert NoPositional(16, 2, 16).attn_bias(8, torch.device("cpu"), torch.float32) is None


# --- RMSNorm ------------------------------------------------------------------------------------------


def test_rms_layernorm_is_the_formula(make_model):
    """rms = x / sqrt(mean(x²) + eps) · g with a non-trivial g, eps 1e-6; no mean subtracted, no bias
    even when model.bias is true."""
    norm = make_model("model/layernorm=rms", "model.bias=true").transformer.h[0].ln_1
    assert isinstance(norm, torch.nn.RMSNorm)
    assert layernorm.get("rms").params["eps"] == 1e-6 and norm.eps == 1e-6
    assert list(norm.state_dict()) == ["weight"]
    _randomise(norm)
    x = torch.randn(4, 3, 16) * 3 + 1  # a non-zero mean: what tells RMSNorm from LayerNorm
    x[0, 0] = 1e-4 * torch.randn(16)  # tiny values: here eps matters
    expected = x / torch.sqrt((x * x).sum(-1, keepdim=True) / 16 + 1e-6) * norm.weight
    torch.testing.assert_close(norm(x), expected, atol=1e-5, rtol=1e-5)
    centred = torch.nn.functional.layer_norm(x, (16,), norm.weight, None, 1e-6)
    assert not torch.allclose(norm(x), centred, atol=1e-2)
    no_eps = x / torch.sqrt((x * x).mean(-1, keepdim=True)) * norm.weight
    assert not torch.allclose(norm(x)[0, 0], no_eps[0, 0], atol=1e-2)


# --- gated MLPs ---------------------------------------------------------------------------------------

GATES = {
    "swiglu": lambda v: v * torch.sigmoid(v),
    "geglu": lambda v: 0.5 * v * (1 + torch.erf(v / math.sqrt(2))),
    "reglu": lambda v: v.clamp_min(0.0),
}


@pytest.mark.parametrize("name", list(GATES))
def test_gated_mlp_is_c_proj_of_gate_times_up(make_model, name):
    """mlp(x) = c_proj(gate(x W_gate + b_gate) * (x W_up + b_up)), with c_fc = [W_gate; W_up], and its own gate."""
    model = make_model(f"model/mlp={name}")
    layer = _randomise(model.transformer.h[0].mlp)
    H = layer.hidden
    assert H == round(8 * model.config.n_embd / 3)
    x = torch.randn(2, 5, model.config.n_embd)
    w_gate, w_up = layer.c_fc.weight[:H], layer.c_fc.weight[H:]
    b_gate, b_up = layer.c_fc.bias[:H], layer.c_fc.bias[H:]
    with torch.no_grad():
        out = layer(x)
        for gate_name, gate in GATES.items():
            hidden = gate(x @ w_gate.T + b_gate) * (x @ w_up.T + b_up)
            expected = hidden @ layer.c_proj.weight.T + layer.c_proj.bias
            if gate_name == name:
                torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
            else:
                assert not torch.allclose(out, expected, atol=1e-3), gate_name


@pytest.mark.parametrize("name", list(GATES))
def test_gated_mlp_ignores_the_activation_slot(make_model, name):
    """Gated variants fix their gate: model/activation changes nothing (it applies to mlp=standard)."""
    outputs = []
    for act in ("relu", "gelu"):
        torch.manual_seed(3)
        model = make_model(f"model/mlp={name}", f"model/activation={act}").eval()
        assert model.config.activation["name"] == act
        outputs.append(model(torch.arange(10).view(1, 10))[0])
    torch.testing.assert_close(outputs[0], outputs[1], atol=0, rtol=0)


@pytest.mark.parametrize("name", list(GATES))
@pytest.mark.parametrize("n_embd", [16, 64, 96, 100, 128, 768])
def test_gated_mlp_matches_the_standard_parameter_count(name, n_embd):
    """Without biases, round(8C/3) hidden units give the standard MLP's 8C² weights: exactly when 3
    divides C, otherwise within C (a third of one gated hidden unit, which costs 3C)."""
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    standard = count(mlp.build("standard", n_embd, False, "gelu_tanh"))
    gated = count(mlp.build(name, n_embd, False, "gelu_tanh"))
    assert standard == 8 * n_embd * n_embd
    assert abs(gated - standard) <= n_embd
    if n_embd % 3 == 0:
        assert gated == standard


@pytest.mark.parametrize("name", list(GATES))
def test_gated_mlp_hidden_and_multiple_of(make_model, name):
    """``hidden`` sets the width; ``multiple_of`` rounds the automatic width up; bad values are refused."""
    layer = make_model(f"model/mlp={name}", "model.mlp.hidden=24").transformer.h[0].mlp
    assert layer.hidden == 24
    assert layer.c_fc.weight.shape == (48, 16) and layer.c_proj.weight.shape == (16, 24)
    layer = mlp.build({"name": name, "multiple_of": 64}, 100, False, "gelu_tanh")
    assert layer.hidden == 320  # round(800 / 3) = 267, rounded up to a multiple of 64
    with pytest.raises(
        ConfigError, match=r"model.mlp.hidden=0 must be a positive integer, or null for round\(8·n_embd/3\) \(43 here\)"
    ):
        make_model(f"model/mlp={name}", "model.mlp.hidden=0")
    with pytest.raises(ConfigError, match=r"model.mlp.multiple_of=0 must be a positive integer"):
        make_model(f"model/mlp={name}", "model.mlp.multiple_of=0")


def test_gated_mlp_c_proj_gets_gpt2s_residual_init(make_model):
    """GPT-2's init finds the gated MLP's output projection: N(0, 0.02/sqrt(2L)), the fused c_fc N(0, 0.02)."""
    model = make_model("model/mlp=swiglu", "model/init=gpt2", "model.n_layer=8", "model.n_embd=256", "model.n_head=8")
    layer = model.transformer.h[0].mlp
    resid = 0.02 / math.sqrt(2 * 8)
    assert abs(layer.c_proj.weight.std().item() - resid) < 0.1 * resid
    assert abs(layer.c_fc.weight.std().item() - 0.02) < 0.002


# --- q/k norm -----------------------------------------------------------------------------------------


def test_rms_qk_norm_normalises_each_head_before_rotary(make_model):
    """q and k reaching the dot product are RMSNorm(q)·g_q and RMSNorm(k)·g_k over each head's channels,
    then rotated: per-head RMS equals a constant gain, and attention uses them."""
    model = make_model("model/qk_norm=rms", "model/positional=rotary", "model.n_head=4")
    attn, wpe = model.transformer.h[0].attn, model.transformer.wpe
    assert qk_norm.get("rms").params["eps"] == 1e-6 and attn.qk_norm.q_norm.eps == 1e-6
    _randomise(attn)
    x = torch.randn(2, 9, model.config.n_embd)
    q_raw, k_raw, v = _fused_qkv(attn, x, 4)
    with torch.no_grad():
        attn.qk_norm.q_norm.weight.fill_(2.5)
        attn.qk_norm.k_norm.weight.fill_(0.7)
        q, k, _ = attn.queries_keys_values(x, wpe)
    assert q.shape == k.shape == (2, 4, 9, 4)
    torch.testing.assert_close(_rms(q), torch.full_like(_rms(q), 2.5), atol=1e-4, rtol=0)
    torch.testing.assert_close(_rms(k), torch.full_like(_rms(k), 0.7), atol=1e-4, rtol=0)
    assert not torch.allclose(_rms(q_raw), torch.full_like(_rms(q_raw), 2.5), atol=0.1)  # the raw ones are not

    _randomise(attn.qk_norm)  # per-channel gains: the full formula, normalise then rotate
    g_q, g_k = attn.qk_norm.q_norm.weight, attn.qk_norm.k_norm.weight
    ref_q = _reference_rope(q_raw / torch.sqrt(q_raw.pow(2).mean(-1, keepdim=True) + 1e-6) * g_q)
    ref_k = _reference_rope(k_raw / torch.sqrt(k_raw.pow(2).mean(-1, keepdim=True) + 1e-6) * g_k)
    with torch.no_grad():
        q, k, _ = attn.queries_keys_values(x, wpe)
        torch.testing.assert_close(q, ref_q, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(k, ref_k, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(attn(x, wpe), _attend(attn, ref_q, ref_k, v), atol=1e-5, rtol=1e-5)
        # rotating first and normalising after is a different model once the gains differ per channel
        after = _reference_rope(q_raw)
        after = after / torch.sqrt(after.pow(2).mean(-1, keepdim=True) + 1e-6) * g_q
        assert not torch.allclose(q, after, atol=1e-3)


def test_qk_norm_none_leaves_q_and_k_alone(make_model):
    attn = make_model("model/qk_norm=none").transformer.h[0].attn
    q, k = torch.randn(2, 2, 5, 8), torch.randn(2, 2, 5, 8)
    out_q, out_k = attn.qk_norm(q, k)
    assert out_q is q and out_k is k
    assert not list(attn.qk_norm.parameters())


# --- parallel block -----------------------------------------------------------------------------------


def test_parallel_block_is_x_plus_attn_plus_mlp_of_one_norm(make_model):
    """block(x) = x + attn(ln_1(x)) + mlp(ln_1(x)); there is no ln_2, and the model keeps a final norm."""
    model = make_model("model/norm=parallel")
    block, wpe = model.transformer.h[0], model.transformer.wpe
    assert not hasattr(block, "ln_2")
    assert not any(".ln_2." in k for k in model.state_dict())
    assert isinstance(model.transformer.ln_f, torch.nn.LayerNorm)
    _randomise(block, scale=0.5)
    x = torch.randn(2, 7, model.config.n_embd)
    with torch.no_grad():
        h = block.ln_1(x)
        expected = x + block.attn(h, wpe) + block.mlp(h)
        torch.testing.assert_close(block(x, wpe), expected, atol=1e-6, rtol=0)
        sequential = x + block.attn(h, wpe)
        sequential = sequential + block.mlp(block.ln_1(sequential))  # pre-norm wiring with the same parts
        assert not torch.allclose(block(x, wpe), sequential, atol=1e-3)


# --- model.bias=false ---------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["gpt2", "seed", "modern"])
def test_bias_false_leaves_no_bias_anywhere(make_model, preset):
    """model.bias=false: no parameter named *bias* for any mlp × layernorm variant (the output layer's
    own flag, lm_head_bias, aside); model.bias=true does give them biases, so the check can fail."""
    for mlp_name in mlp.names():
        for norm_name in layernorm.names():
            choice = [f"model={preset}", f"model/mlp={mlp_name}", f"model/layernorm={norm_name}"]
            model = make_model(*choice, "model/qk_norm=rms", "model.bias=false")
            named = {n for n, _ in model.named_parameters() if "bias" in n}
            assert named == ({"lm_head.bias"} if model.config.lm_head_bias else set()), (choice, named)
            with_bias = {n for n, _ in make_model(*choice, "model.bias=true").named_parameters() if "bias" in n}
            assert "transformer.h.0.mlp.c_fc.bias" in with_bias and "transformer.h.0.mlp.c_proj.bias" in with_bias
            assert ("transformer.h.0.ln_1.bias" in with_bias) == (norm_name != "rms"), (choice, with_bias)


# --- the modern preset and its sweep ------------------------------------------------------------------

MODERN = {
    "positional": "rotary",
    "norm": "pre",
    "activation": "gelu_tanh",
    "attn_scale": "head_dim",
    "layernorm": "rms",
    "qkv": "fused",
    "mlp": "swiglu",
    "qk_norm": "none",
    "init": "gpt2",
}


def test_gptconfig_defaults_for_the_new_slots():
    choices = GPTConfig(vocab_size=7).choices()
    assert choices["mlp"] == "standard" and choices["qk_norm"] == "none"
    assert list(choices) == list(SLOTS)


def test_modern_preset(compose_cfg, make_model):
    """model=modern: pre-norm, RMSNorm, rotary, SwiGLU, no biases, an untied head without a bias,
    no q/k norm, 1/sqrt(head_dim), fused q/k/v, GPT-2's init."""
    assert preset_choices("modern") == MODERN
    cfg = compose_cfg("model=modern").model
    config = GPTConfig.from_dict(OmegaConf.to_container(cfg, resolve=True), vocab_size=11)
    assert config.choices() == MODERN
    assert cfg.preset == "modern"
    assert (config.bias, config.tie_embeddings, config.lm_head_bias) == (False, False, False)
    assert (config.dropout, config.attn_dropout) == (0.0, 0.0)
    model = make_model("model=modern")
    assert model.lm_head.weight is not model.transformer.wte.weight and model.lm_head.bias is None
    assert not [n for n, _ in model.named_parameters() if "bias" in n]
    block = model.transformer.h[0]
    assert type(block.mlp).__name__ == "SwiGLU" and isinstance(block.ln_1, torch.nn.RMSNorm)
    assert type(model.transformer.wpe).__name__ == "RotaryPositional"
    assert abs(model.transformer.h[0].attn.c_proj.weight.std().item() - 0.02 / 2) < 0.005  # GPT-2's init, L = 2


def _architecture(compose_cfg, *overrides):
    """What a run built from these overrides is: its slot choices, model.bias, and the output layer."""
    cfg = GPTConfig.from_dict(OmegaConf.to_container(compose_cfg(*overrides).model, resolve=True), vocab_size=7)
    return {**cfg.choices(), "bias": cfg.bias, "head": (cfg.tie_embeddings, cfg.lm_head_bias)}


def test_gpt2_to_modern_sweep_changes_one_thing_per_arm(compose_cfg):
    """Each arm is a preset with exactly one of the other preset's choices, and together the arms cover
    every difference between gpt2 and modern in both directions."""
    sweep = OmegaConf.load(sweeps_dir() / "gpt2_to_modern.yaml")
    assert (sweep.sweep.name, sweep.sweep.baseline) == ("gpt2_to_modern", "gpt2")
    assert sweep.hydra.sweeper.params.seed == "1,2,3"
    presets = {name: _architecture(compose_cfg, f"model={name}") for name in ("gpt2", "modern")}
    differences = {k for k in presets["gpt2"] if presets["gpt2"][k] != presets["modern"][k]}
    assert differences == {"positional", "layernorm", "mlp", "bias", "head"}
    covered = set()
    for arm, overrides in sweep.hydra.sweeper.arms.items():
        base, _, change = arm.partition("+")
        other = "modern" if base == "gpt2" else "gpt2"
        got = _architecture(compose_cfg, *overrides)
        changed = {k for k in got if got[k] != presets[base][k]}
        if not change:
            assert changed == set(), arm
            continue
        assert len(changed) == 1, (arm, changed)
        (key,) = changed
        assert got[key] == presets[other][key], arm
        assert change.split("=")[0] == key, arm  # the arm's name says what it changes
        covered.add((base, key))
    assert covered == {(base, key) for base in presets for key in differences}
    assert set(sweep.hydra.sweeper.arms) >= {"gpt2", "modern"}

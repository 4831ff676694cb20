"""The contract every variant keeps, parametrized over the registry: a variant registered tomorrow is
tested by these same functions with no new test code."""

import copy
import itertools
import math

import pytest
import torch

import ablate.components  # noqa: F401  (registers every built-in variant before collection)
from ablate.model import GPT, GPTConfig
from ablate.registry import SLOTS

# Every (slot, variant) pair, read off the registry at collection time.
PAIRS = [(slot.name, name) for slot in SLOTS.values() for name in slot.names()]
IDS = [f"{slot}={name}" for slot, name in PAIRS]

B, T = 3, 12  # T below the tiny model's block_size (16), so every positional variant applies


def _tokens(model, generator=None):
    return torch.randint(0, model.config.vocab_size, (B, T), generator=generator)


def _state_dicts_equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_registry_has_variants():
    """The parametrization below is not vacuous: every slot offers at least two variants."""
    assert len(SLOTS) >= 7
    assert all(len(slot.names()) >= 2 for slot in SLOTS.values())
    assert len(PAIRS) == sum(len(slot.names()) for slot in SLOTS.values())


@pytest.mark.parametrize(("slot", "variant"), PAIRS, ids=IDS)
def test_shapes(make_model, slot, variant):
    """Logits are (B, T, vocab), the loss a finite scalar, and the variant is the one asked for."""
    model = make_model(f"model/{slot}={variant}")
    assert model.config.choices()[slot] == variant
    idx = _tokens(model)
    logits, loss = model(idx, idx)
    assert logits.shape == (B, T, model.config.vocab_size)
    assert loss.shape == ()
    assert torch.isfinite(loss)
    _, no_loss = model(idx)
    assert no_loss is None


@pytest.mark.parametrize(("slot", "variant"), PAIRS, ids=IDS)
def test_every_parameter_gets_a_finite_gradient(make_model, slot, variant):
    """After backward every parameter (the tied head/wte weight once) has a finite, non-zero gradient."""
    model = make_model(f"model/{slot}={variant}")
    params = dict(model.named_parameters())  # named_parameters() yields a shared tensor once
    if model.config.tie_embeddings:
        assert "lm_head.weight" not in params and model.lm_head.weight is model.transformer.wte.weight
    idx = _tokens(model)
    _, loss = model(idx, torch.roll(idx, -1, dims=1))
    loss.backward()
    for name, p in params.items():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{name} has an all-zero gradient"


@pytest.mark.parametrize(("slot", "variant"), PAIRS, ids=IDS)
def test_causal(make_model, slot, variant):
    """Changing token t+1 and everything after it never changes the logits at positions <= t."""
    model = make_model(f"model/{slot}={variant}").eval()
    idx = _tokens(model)
    with torch.no_grad():
        base, _ = model(idx)
        for t in (0, 4, T - 2):
            changed = idx.clone()
            changed[:, t + 1 :] = (idx[:, t + 1 :] + 1 + torch.randint_like(idx[:, t + 1 :], 5)) % (
                model.config.vocab_size
            )
            assert (changed[:, t + 1 :] != idx[:, t + 1 :]).all()
            logits, _ = model(changed)
            torch.testing.assert_close(logits[:, : t + 1], base[:, : t + 1], atol=1e-6, rtol=0)
            # and the change is visible where it is allowed to be, so the check above is not vacuous
            assert not torch.allclose(logits[:, t + 1], base[:, t + 1], atol=1e-4)


@pytest.mark.parametrize(("slot", "variant"), PAIRS, ids=IDS)
def test_deterministic_under_a_seed(make_model, slot, variant):
    """Two models built under the same torch seed have identical weights and outputs; another seed differs."""
    models = []
    for seed in (7, 7, 8):
        torch.manual_seed(seed)
        models.append(make_model(f"model/{slot}={variant}").eval())
    a, b, other = models
    assert _state_dicts_equal(a.state_dict(), b.state_dict())
    assert not _state_dicts_equal(a.state_dict(), other.state_dict())
    idx = _tokens(a)
    with torch.no_grad():
        assert torch.equal(a(idx)[0], b(idx)[0])


@pytest.mark.parametrize(("slot", "variant"), PAIRS, ids=IDS)
def test_state_dict_round_trip(make_model, slot, variant):
    """A fresh model that loads another's state dict has the same keys and gives the same outputs."""
    torch.manual_seed(1)
    source = make_model(f"model/{slot}={variant}").eval()
    torch.manual_seed(2)
    target = make_model(f"model/{slot}={variant}").eval()
    idx = _tokens(source)
    with torch.no_grad():
        expected, _ = source(idx)
        assert not torch.allclose(target(idx)[0], expected)  # differently initialised before loading
        assert list(target.state_dict()) == list(source.state_dict())
        target.load_state_dict(source.state_dict(), strict=True)
        torch.testing.assert_close(target(idx)[0], expected, atol=0, rtol=0)
    if source.config.tie_embeddings:
        assert target.lm_head.weight is target.transformer.wte.weight  # loading keeps the tie


@pytest.mark.parametrize("bias", [True, False])
def test_layernorm_variants_keep_gpt2s_parameter_names(bias):
    """Every layernorm variant uses GPT-2's names, alone and inside a model, because init and weight
    conversion rely on them: a ``weight``, and a ``bias`` only if it has one (RMSNorm has none) and
    model.bias allows it; no variant renames or adds a parameter."""
    slot = SLOTS["layernorm"]
    allowed = {"weight", "bias"} if bias else {"weight"}
    for name in slot.names():
        keys = set(slot.build(name, 8, bias).state_dict())
        assert "weight" in keys and keys <= allowed, (name, keys)
    keys = {
        name: set(GPT(GPTConfig(vocab_size=7, n_layer=2, n_head=2, n_embd=8, bias=bias, layernorm=name)).state_dict())
        for name in slot.names()
    }
    union = set().union(*keys.values())
    assert "transformer.h.0.ln_1.weight" in union
    for name, k in keys.items():
        # the models differ at most by norm biases: the same names otherwise, nothing renamed
        assert {key for key in union if not key.endswith(".bias")} <= k, name
        assert all(".ln_" in key and key.endswith(".bias") for key in union - k), (name, union - k)


@pytest.mark.slow
def test_full_factorial_builds_and_trains():
    """Every combination of one variant per slot builds, gives a finite loss, and one AdamW step moves
    every parameter tensor."""
    names = [slot.name for slot in SLOTS.values()]
    combos = list(itertools.product(*(slot.names() for slot in SLOTS.values())))
    generator = torch.Generator().manual_seed(0)
    idx = torch.randint(0, 7, (2, 8), generator=generator)
    targets = torch.randint(0, 7, (2, 8), generator=generator)
    seen = set()
    for combo in combos:
        choice = dict(zip(names, combo, strict=True))
        model = GPT(GPTConfig(vocab_size=7, n_layer=1, n_head=2, n_embd=8, block_size=8, **choice))
        assert model.config.choices() == choice
        before = {k: p.detach().clone() for k, p in model.named_parameters()}
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
        _, loss = model(idx, targets)
        assert torch.isfinite(loss), choice
        loss.backward()
        optimizer.step()
        for k, p in model.named_parameters():
            assert not torch.equal(p, before[k]), (choice, k)
        seen.add(combo)
    assert len(seen) == len(combos) == math.prod(len(slot.names()) for slot in SLOTS.values())


@pytest.mark.slow
@pytest.mark.parametrize(("slot", "variant"), PAIRS, ids=IDS)
def test_compiles_as_one_graph_and_computes_what_eager_does(make_model, slot, variant):
    """torch.compile captures the whole model in one graph (fullgraph: no graph break, which would leave part
    of it eager), and its forward and backward match eager. ``aot_eager`` runs dynamo's capture and AOT
    autograd, where a variant's Python meets the compiler; inductor's code generation is timed by ablate-bench."""
    torch._dynamo.reset()  # each test's model is new: without this, recompilations pile up to dynamo's limit
    model = make_model(f"model/{slot}={variant}")
    compiled = copy.deepcopy(model)
    compiled.compile(backend="aot_eager", fullgraph=True)
    idx = _tokens(model)
    (a, loss_a), (b, loss_b) = compiled(idx, idx), model(idx, idx)
    torch.testing.assert_close(a, b)
    loss_a.backward()
    loss_b.backward()
    for (name, p), q in zip(compiled.named_parameters(), model.parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=name)

"""Property-based: random override combinations either build a working model or fail with one clear line."""

import math

import torch
from conftest import compose_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from ablate.config import check_overrides
from ablate.errors import AblateError
from ablate.model import GPT, GPTConfig
from ablate.registry import SLOTS

slot_override = st.sampled_from(sorted(SLOTS)).flatmap(
    lambda slot: st.sampled_from([*SLOTS[slot].names(), "bogus", "Relu", ""]).map(lambda v: f"model/{slot}={v}")
)
size_override = st.tuples(
    st.sampled_from(["n_layer", "n_head", "n_embd", "block_size"]),
    st.one_of(st.integers(-2, 40), st.sampled_from(["abc", "2.5", "null", "[1,2]", "true"])),
).map(lambda kv: f"model.{kv[0]}={kv[1]}")
number_override = st.tuples(
    st.sampled_from(["dropout", "attn_dropout"]),
    st.one_of(st.floats(-0.5, 1.5, allow_nan=False).map(lambda f: f"{f:.3f}"), st.sampled_from(["x", "null", "1e9"])),
).map(lambda kv: f"model.{kv[0]}={kv[1]}")
flag_override = st.tuples(
    st.sampled_from(["bias", "tie_embeddings", "lm_head_bias"]), st.sampled_from(["true", "false", "yes", "2"])
).map(lambda kv: f"model.{kv[0]}={kv[1]}")
preset_override = st.sampled_from(["model=gpt2", "model=seed", "model=gpt3"])
overrides = st.lists(st.one_of(preset_override, slot_override, size_override, number_override, flag_override), max_size=6)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(overrides)
def test_random_overrides_build_a_working_model_or_fail_with_one_clear_line(args):
    # small sizes unless the example sets its own, so that valid examples stay cheap
    args = ["model.n_layer=1", "model.n_head=2", "model.n_embd=8", "model.block_size=8", *args]
    try:
        check_overrides(args)
        cfg = compose_config(*args)
        model = GPT(GPTConfig.from_dict(OmegaConf.to_container(cfg.model, resolve=True), vocab_size=7))
    except AblateError as e:
        message = str(e)
        assert message and "\n" not in message and len(message) < 400, message
        return
    T = min(5, model.config.block_size)
    idx = torch.randint(0, 7, (2, T))
    logits, loss = model(idx, idx)
    assert logits.shape == (2, T, 7) and math.isfinite(loss.item())
    loss.backward()

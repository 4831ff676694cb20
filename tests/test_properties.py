"""Property-based: random override combinations either build a working model or fail with one clear line."""

import math

import pytest
import torch
from conftest import compose_config
from hypothesis import HealthCheck, event, given, settings
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


@pytest.mark.slow
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
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


# -- the whole config: every group's settings, right and wrong, through a real two-step run ------------------------
def _setting(key: str, values: st.SearchStrategy, variant: str | None = None) -> st.SearchStrategy:
    """(the key, its command-line overrides, what it sets): a recipe variant's parameter comes with its variant
    (``optim/schedule=wsd optim.schedule.decay_fraction=...``), and at most one draw sets each slot."""
    if variant is None:
        return values.map(lambda v: (key, [f"{key}={v}"], key.replace(".", "/")))
    group = key.rsplit(".", 1)[0].replace(".", "/")
    return values.map(lambda v: (key, [f"{group}={variant}", f"{key}={v}"], group))


_wrong = st.sampled_from(["abc", "[1,2]", "null", "true"])
settings_overrides = st.lists(
    st.one_of(
        _setting("seed", st.one_of(st.integers(-3, 5), st.just(2**32), _wrong)),
        _setting("threads", st.sampled_from([-1, 0, 1, "null", "x"])),
        _setting("data.batch_size", st.one_of(st.integers(-1, 4), st.just(2.5), _wrong)),
        _setting("data.val_fraction", st.sampled_from([0.01, 0.5, 0, 1, 1.5, -0.1, "x"])),
        _setting("data.eval_batches", st.one_of(st.integers(-1, 2), _wrong)),
        _setting("data.tokenizer", st.sampled_from(["char", "bytes", 3])),
        _setting("optim.lr", st.one_of(st.sampled_from([1e-3, 1e-5, 0, -1, "abc", "inf"]))),
        _setting("optim.min_lr", st.sampled_from([0, 1e-4, 0.5, -1, "x"])),
        _setting("optim.warmup_steps", st.one_of(st.integers(-2, 3), st.just(1.5))),
        _setting("optim.betas", st.sampled_from(["[0.9,0.95]", "[0.9]", "[1.5,0.9]", "abc"])),
        _setting("optim.eps", st.sampled_from([1e-8, 0, -1, "x"])),
        _setting("optim.weight_decay", st.sampled_from([0, 0.1, -0.1, "x"])),
        _setting("optim/optimizer", st.sampled_from(["adamw", "muon"])),
        _setting("optim/schedule", st.sampled_from(["cosine", "wsd", "constant", "linear"])),
        _setting("optim.schedule.decay_fraction", st.sampled_from([0.5, 1, 0, 1.5, "x"]), variant="wsd"),
        _setting("optim.optimizer.momentum", st.sampled_from([0.9, 1.0, -0.1, "x"]), variant="muon"),
        _setting("optim.optimizer.ns_steps", st.sampled_from([1, 0, 2.5]), variant="muon"),
        _setting("trainer.max_steps", st.sampled_from([2, 0, -1, "x", 2.5])),
        _setting("trainer.val_check_interval", st.sampled_from([1, 2, 0, -1, 0.5])),
        _setting("trainer.precision", st.sampled_from(["32-true", "bf16-mixed", "bf17", 8])),
        _setting("trainer.gradient_clip_val", st.sampled_from([1.0, 0, -1, "null", "x"])),
        _setting("trainer.log_every_n_steps", st.sampled_from([1, 0, "x"])),
        _setting("logger.mode", st.sampled_from(["disabled", "bogus", 3])),
        _setting("sample.temperature", st.sampled_from([0.8, 0, -1, "x"])),
        _setting("sample.top_k", st.sampled_from([1, 0, "null", "x"])),
        _setting("sample.max_new_tokens", st.sampled_from([0, 2, -1, "x"])),
        _setting("sample.prompt", st.sampled_from(["''", "a", "3"])),
        _setting("sweep.margin", st.sampled_from(["null", 0.01, 0, -1])),
        _setting("+trainer.bogus", st.just(1)),
    ),
    max_size=4,
    unique_by=lambda kv: kv[2],
)
RUN_BASE = [
    "model.n_layer=1", "model.n_head=2", "model.n_embd=8", "model.block_size=8", "trainer.max_steps=2",
    "trainer.val_check_interval=2", "trainer.enable_progress_bar=false", "data.eval_batches=1", "data.batch_size=2",
    "data.val_fraction=0.01", "sample.max_new_tokens=2", "logger.mode=disabled", "optim.warmup_steps=1", "threads=1",
]


@pytest.mark.slow
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(drawn=settings_overrides)
def test_random_settings_train_two_steps_or_fail_with_one_line_naming_a_drawn_key(drawn, tmp_path_factory):
    import time

    from ablate.data import default_text_path
    from ablate.train import run

    text = tmp_path_factory.getbasetemp() / "shakespeare-4k.txt"  # a short text: the final evaluation is instant
    if not text.exists():
        text.write_text(default_text_path().read_text()[:4000])
    args = [*RUN_BASE, f"data.path={text}", *(line for _, lines, _ in drawn for line in lines)]
    start = time.time()
    try:  # run() checks the settings first, as ablate-train does (which also checks them before Hydra starts)
        summary = run(compose_config(*args), tmp_path_factory.mktemp("run"))
    except AblateError as e:
        message = str(e)
        assert message and "\n" not in message and len(message) < 600, message
        assert any(key.lstrip("+") in message for key, _, _ in drawn), (drawn, message)
        event("refused")
    else:
        event("trained")
        steps = OmegaConf.select(compose_config(*args), "trainer.max_steps")
        assert summary["status"] == "completed" and summary["steps"] == steps == 2, (drawn, summary)
        assert math.isfinite(summary["val_loss_final"])
    assert time.time() - start < 60, drawn

"""The registry and Hydra's config groups are one and the same list of variants."""

import pytest
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from torch import nn

from ablate.config import check_overrides, conf_dir, preset_choices
from ablate.errors import ConfigError
from ablate.registry import RECIPE_SLOTS, SLOTS
from ablate.variants import describe

SLOT_NAMES = ["positional", "norm", "activation", "attn_scale", "layernorm", "qkv", "mlp", "qk_norm", "init"]


def _group_options(group: str) -> list[str]:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return sorted(GlobalHydra.instance().config_loader().get_group_options(group))


def test_every_slot_of_the_design_exists():
    assert list(SLOTS) == SLOT_NAMES


@pytest.mark.parametrize("slot", SLOT_NAMES)
def test_registry_and_config_group_agree(slot):
    """Each registered variant is a Hydra option of model/<slot>, and no option lacks a variant."""
    assert _group_options(f"model/{slot}") == SLOTS[slot].names()


def test_presets_pick_one_registered_variant_per_slot():
    presets = _group_options("model")
    assert presets == ["gpt2", "modern", "seed"]
    for preset in presets:
        choices = preset_choices(preset)
        assert sorted(choices) == sorted(SLOT_NAMES), preset
        for slot, name in choices.items():
            assert name in SLOTS[slot], (preset, slot, name)


def test_sizes_are_gpt2s():
    assert _group_options("model/size") == ["large", "medium", "small", "tiny", "xl"]


def test_duplicate_name_is_refused_and_the_original_kept():
    slot = SLOTS["activation"]
    original = slot.get("relu").target

    with pytest.raises(ConfigError, match=r"model/activation=relu is already registered"):

        @slot.register("relu")
        class Impostor(nn.Identity):
            pass

    assert slot.get("relu").target is original


def test_unknown_variant_names_the_valid_ones():
    with pytest.raises(ConfigError, match=r"unknown model/norm='sideways'; choose one of: parallel, post, pre"):
        SLOTS["norm"].get("sideways")


@pytest.mark.parametrize(
    "args, message",
    [
        (["model.n_layr=3"], "unknown key model.n_layr (did you mean model.n_layer?); model has: "),
        (["-m", "seed=1,2", "trainer.max_stpes=5,6"],
         "unknown key trainer.max_stpes (did you mean trainer.max_steps?); trainer has: "),
        (["tranier.max_steps=5"], "unknown key tranier.max_steps (did you mean trainer?); the root config has: model, data, optim, trainer, "),
        (["model.size=small"], "unknown key model.size (model/size is a config group: model/size=...); model has: "),
        (["model.nope.deeper=1"], "unknown key model.nope.deeper; model has: "),
        # a variant's parameter exists only where that variant is chosen: gpt2's qk_norm is none
        (["model.qk_norm.eps=1e-5"], "unknown key model.qk_norm.eps; model.qk_norm has: name"),
        # checked in each arm of a sweep: a key the first arm ('gpt2', learned positions) lacks
        (["sweeps=gpt2_to_modern", "model.positional.base=500.0"],
         "sweeps=gpt2_to_modern, arm 'gpt2': unknown key model.positional.base; model.positional has: name"),
        (["sweeps=search_lr", "optim.lrr=1"], "sweeps=search_lr: unknown key optim.lrr (did you mean optim.lr?); "),
        (["sweeps=none", "model.n_layr=1"], "unknown key model.n_layr (did you mean model.n_layer?); "),
        # Hydra's flags and their values are not overrides: the override after them is still checked
        (["--cfg", "job", "--package", "model", "-i", "config", "model.n_layr=1"], "unknown key model.n_layr "),
    ],
)
def test_unknown_key_is_one_line_naming_its_parents_keys(args, message):
    with pytest.raises(ConfigError) as e:
        check_overrides(args)
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


@pytest.mark.slow
def test_keys_are_checked_in_the_config_the_group_overrides_compose():
    # keys of the chosen preset and variants, keys added with +, hydra's own keys: all pass
    check_overrides(["model/qk_norm=rms", "model.qk_norm.eps=1e-5", "model/positional=rotary",
                     "model.positional.base=500.0"])
    check_overrides(["model=seed", "model.n_layer=2", "+model.extra=1", "model.extra=2", "hydra.run.dir=/tmp/x",
                     "-m", "model/norm=pre,post", "trainer.max_steps=3,4"])
    check_overrides(["sweeps=seed_to_gpt2", "model.n_embd=64", "sweep.baseline=gpt2"])
    check_overrides(["sweeps=gpt2_to_modern", "model.n_embd=64", "+model.extra=1", "model.extra=2", "seed=4"])


def test_unknown_variant_parameter_is_refused():
    with pytest.raises(ConfigError, match=r"model/layernorm=torch takes no parameter 'epsilon'; its parameters: eps"):
        SLOTS["layernorm"].build({"name": "torch", "epsilon": 1e-3}, 8, True)


def test_ablate_variants_lists_every_variant_and_each_presets_pick():
    text = describe()
    for slot in SLOTS.values():
        assert f"{slot.group}:" in text
        for name in slot.names():
            assert f"  {name} " in text
    assert "post" in text and "[seed]" in text and "[modern]" in text and "[gpt2, modern]" in text
    recipe = text[text.index("The training recipe"):]
    for slot in RECIPE_SLOTS.values():
        assert f"{slot.group}:" in recipe and all(f"  {name} " in recipe for name in slot.names())
    assert [line.split()[0] for line in recipe.splitlines() if line.endswith("[default]")] == ["adamw", "cosine"]

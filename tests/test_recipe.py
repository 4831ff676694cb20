"""The training recipe's slots (optim/optimizer, optim/schedule), held to the same contract as the model's:
composed by Hydra, one step lowers the loss, decay on the right parameters, the schedule's values at known
steps, and an exact resume mid-schedule through a real Trainer."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from conftest import TINY, compose_config
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import OmegaConf
from test_reliability import RUN, PreemptAt, curves

from ablate.checkpoints import load_checkpoint
from ablate.config import check_overrides
from ablate.errors import ConfigError
from ablate.model import GPT, GPTConfig
from ablate.recipe import Muon, build_optimizer, lr_at, lr_factor, muon_matrices, optimizer, orthogonalize, schedule
from ablate.registry import RECIPE_SLOTS, SLOTS
from ablate.train import run

OPTIMIZERS = optimizer.names()
SCHEDULES = schedule.names()


def optim_cfg(*overrides: str) -> dict:
    return OmegaConf.to_container(compose_config(*overrides).optim, resolve=True)


def tiny_model(*overrides: str) -> GPT:
    cfg = compose_config(*TINY, *overrides)
    return GPT(GPTConfig.from_dict(OmegaConf.to_container(cfg.model, resolve=True), vocab_size=11))


def test_recipe_slots_are_config_groups_like_the_models():
    assert set(RECIPE_SLOTS) == {"optimizer", "schedule"} and not set(RECIPE_SLOTS) & set(SLOTS)
    assert {"adamw", "muon"} <= set(OPTIMIZERS) and {"cosine", "wsd", "constant", "linear"} <= set(SCHEDULES)
    default = compose_config()
    assert default.optim.optimizer.name == "adamw" and default.optim.schedule.name == "cosine"
    cfg = compose_config("optim/optimizer=muon", "optim/schedule=wsd", "optim.schedule.decay_fraction=0.1")
    assert cfg.optim.optimizer == {"name": "muon", **optimizer.get("muon").params}
    assert cfg.optim.schedule == {"name": "wsd", "decay_fraction": 0.1}
    with pytest.raises(ConfigError, match=r"^unknown optim/optimizer='sgdd'; choose one of: adamw, muon"):
        check_overrides(["optim/optimizer=sgdd"])


@pytest.mark.parametrize("name", SCHEDULES)
def test_every_schedule_warms_up_linearly_then_never_exceeds_lr(name):
    cfg = optim_cfg(f"optim/schedule={name}")  # lr 1e-3, min_lr 1e-4, 100 warm-up steps, 2000 steps
    f = [lr_factor(s, cfg) for s in range(2001)]
    assert f[0] == pytest.approx(1 / 101) and f[99] == pytest.approx(100 / 101)
    assert all(a < b for a, b in zip(f[:100], f[1:101]))
    assert max(f) == pytest.approx(1.0) and f[100] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[100:], f[101:]))  # never rises after warm-up
    assert lr_at(1050, cfg) == pytest.approx(cfg["lr"] * f[1050])


@pytest.mark.parametrize("name, known", [
    ("cosine", {1050: 0.55, 2000: 0.1, 5000: 0.1}),  # halfway through the cosine: (1 + 0.1) / 2
    ("wsd", {1000: 1.0, 1600: 1.0, 1800: 0.55, 2000: 0.1}),  # decay over the last 20%: 1600..2000
    ("constant", {1050: 1.0, 2000: 1.0}),
    ("linear", {575: 0.775, 1050: 0.55, 2000: 0.1}),
])
def test_schedule_values_at_known_steps(name, known):
    cfg = optim_cfg(f"optim/schedule={name}")
    assert {step: lr_factor(step, cfg) for step in known} == pytest.approx(known)


def test_wsd_decay_fraction_moves_the_start_of_the_decay():
    cfg = optim_cfg("optim/schedule=wsd", "optim.schedule.decay_fraction=0.5")
    assert lr_factor(999, cfg) == 1.0 and lr_factor(1000, cfg) == 1.0 and lr_factor(1001, cfg) < 1.0
    assert lr_factor(1500, cfg) == pytest.approx(0.55)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_one_step_on_a_fixed_batch_lowers_the_loss(name):
    model = tiny_model()
    opt = build_optimizer(model, optim_cfg(f"optim/optimizer={name}"))
    idx = torch.randint(0, 11, (4, 16))
    losses = []
    for _ in range(2):
        _, loss = model(idx, idx)
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert losses[1] < losses[0]


def decayed(groups) -> tuple[set[int], set[int]]:
    on = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    off = {id(p) for g in groups if g["weight_decay"] == 0 for p in g["params"]}
    return on, off


@pytest.mark.parametrize("untied", [False, True])
def test_adamw_decays_matrices_and_embeddings_never_vectors(untied):
    model = tiny_model(*(["model.tie_embeddings=false"] if untied else []))
    opt = build_optimizer(model, optim_cfg())
    assert isinstance(opt, torch.optim.AdamW)
    on, off = decayed(opt.param_groups)
    params = dict(model.named_parameters())
    assert on == {id(p) for p in params.values() if p.dim() >= 2} and off == {id(p) for p in params.values() if p.dim() < 2}
    assert id(model.transformer.wte.weight) in on and id(model.transformer.h[0].ln_1.weight) in off
    assert {g["weight_decay"] for g in opt.param_groups} == {0.1, 0.0}


@pytest.mark.parametrize("preset", ["gpt2", "modern", "seed"])
def test_adamw_on_a_cpu_computes_pytorchs_default_loops_numbers_bit_for_bit(preset):
    """On CPUs ablate runs AdamW's multi-tensor loop (faster) where PyTorch would pick its per-tensor loop: the
    committed CPU studies were made with the per-tensor one, and every parameter and moment stays equal to it."""
    from ablate.recipe import decay_groups

    cfg = optim_cfg()
    models = [tiny_model(f"model={preset}") for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    ours = build_optimizer(models[0], cfg)
    default = torch.optim.AdamW(decay_groups(models[1].parameters(), cfg["weight_decay"]), lr=cfg["lr"],
                                betas=tuple(cfg["betas"]), eps=cfg["eps"])
    assert ours.defaults["foreach"] is True and not default.defaults["foreach"]  # two different loops
    generator = torch.Generator().manual_seed(0)
    for step in range(12):
        batch = torch.randint(0, 11, (4, 17), generator=generator)
        for model, opt in zip(models, (ours, default)):
            for group in opt.param_groups:
                group["lr"] = lr_at(step, cfg) * 20  # a changing, large rate: updates well above rounding
            model(batch[:, :-1], batch[:, 1:])[1].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
    for (name, p), q in zip(models[0].named_parameters(), models[1].parameters()):
        assert torch.equal(p, q), name
    states = [[t for s in opt.state.values() for t in s.values()] for opt in (ours, default)]
    assert len(states[0]) == len(states[1]) > 0 and all(torch.equal(a, b) for a, b in zip(*states))


def test_muon_takes_the_blocks_matrices_and_adamw_the_rest():
    model = tiny_model("model.tie_embeddings=false")
    opt = build_optimizer(model, optim_cfg("optim/optimizer=muon"))
    muon, adamw = opt.optimizers
    assert isinstance(muon, torch.optim.Muon) and isinstance(adamw, torch.optim.AdamW)
    names = {id(p): n for n, p in model.named_parameters()}
    in_muon = {names[id(p)] for g in muon.param_groups for p in g["params"]}
    in_adamw = {names[id(p)] for g in adamw.param_groups for p in g["params"]}
    assert in_muon == {n for n, p in model.named_parameters() if n.startswith("transformer.h.") and p.dim() == 2}
    assert {"transformer.h.0.attn.c_attn.weight", "transformer.h.1.mlp.c_proj.weight"} <= in_muon
    assert in_muon.isdisjoint(in_adamw) and in_muon | in_adamw == set(dict(model.named_parameters()))
    assert {"transformer.wte.weight", "transformer.wpe.weight", "lm_head.weight"} <= in_adamw
    assert muon.param_groups[0]["weight_decay"] == 0.1
    on, off = decayed(adamw.param_groups)
    assert {names[i] for i in on} == {"transformer.wte.weight", "transformer.wpe.weight", "lm_head.weight"}
    assert all(model.get_parameter(names[i]).dim() == 1 for i in off)
    assert len(muon_matrices(model)) == len(in_muon)
    # the schedule reaches both halves: every group is the members' own
    for group in opt.param_groups:
        group["lr"] = 0.5
    assert all(g["lr"] == 0.5 for o in opt.optimizers for g in o.param_groups)



def _muon_steps(make, steps: int = 3) -> list[torch.Tensor]:
    """The matrices after ``steps`` Muon updates from one start, the same gradients each time."""
    torch.manual_seed(0)
    weights = [torch.nn.Parameter(torch.randn(rows, cols)) for rows, cols in ((24, 8), (8, 8), (8, 32))]
    grads = [torch.randn(steps, *w.shape) for w in weights]
    opt = make(weights)
    for i in range(steps):
        for w, g in zip(weights, grads, strict=True):
            w.grad = g[i].clone()
        opt.step()
    return [w.detach().clone() for w in weights]


def test_muon_in_bfloat16_is_pytorchs_muon_bit_for_bit_and_in_float32_nearer_the_exact_iteration():
    """ablate's Muon only lets the Newton-Schulz iteration run in float32 (a CPU emulates bfloat16 matmuls, ~10x
    slower): in bfloat16 its updates are torch.optim.Muon's exactly, tall, square and wide matrices alike."""
    settings = {"lr": 0.02, "weight_decay": 0.1, "adjust_lr_fn": "match_rms_adamw"}
    theirs = _muon_steps(lambda ws: torch.optim.Muon(ws, **settings))
    ours = _muon_steps(lambda ws: Muon(ws, ns_dtype=torch.bfloat16, **settings))
    assert all(torch.equal(a, b) for a, b in zip(theirs, ours, strict=True))
    fp32 = _muon_steps(lambda ws: Muon(ws, ns_dtype=torch.float32, **settings))
    assert not any(torch.equal(a, b) for a, b in zip(theirs, fp32, strict=True))
    # one iteration: float32 lands within float32 rounding of float64, bfloat16 within bfloat16's (8 bits)
    g = torch.randn(24, 8, dtype=torch.float64)
    exact = orthogonalize(g, (3.4445, -4.7750, 2.0315), 5, 1e-7, torch.float64)
    err32 = (orthogonalize(g.float(), (3.4445, -4.7750, 2.0315), 5, 1e-7, torch.float32).double() - exact).abs().max()
    err16 = (orthogonalize(g.float(), (3.4445, -4.7750, 2.0315), 5, 1e-7, torch.bfloat16).double() - exact).abs().max()
    assert err32 < 1e-5 < 1e-3 < err16


def test_muon_runs_its_iteration_in_bfloat16_on_gpus_and_float32_elsewhere_unless_told():
    model = tiny_model()
    assert build_optimizer(model, optim_cfg("optim/optimizer=muon")).optimizers[0].ns_dtype == torch.float32
    assert build_optimizer(model, optim_cfg("optim/optimizer=muon"), "cuda").optimizers[0].ns_dtype == torch.bfloat16
    chosen = build_optimizer(model, optim_cfg("optim/optimizer=muon", "optim.optimizer.ns_dtype=bfloat16"))
    assert chosen.optimizers[0].ns_dtype == torch.bfloat16
    with pytest.raises(ConfigError) as e:
        check_overrides(["optim/optimizer=muon", "optim.optimizer.ns_dtype=float16"])
    assert str(e.value) == ("optim.optimizer.ns_dtype='float16': choose one of: bfloat16, float32, null (bfloat16 on "
                            "GPUs, float32 elsewhere)")

# warm-up 5, decays over 40 steps, wsd decaying from step 10: step 16 (the pre-emption) is mid-schedule
RECIPE = [*RUN, "optim.warmup_steps=5", "optim.lr=3e-3", "optim.min_lr=3e-4"]


@pytest.mark.slow
@pytest.mark.parametrize("recipe", [  # adamw with cosine: test_reliability; the schedules' values: above
    ["optim/schedule=wsd", "optim.schedule.decay_fraction=0.75"],
    ["optim/optimizer=muon", "optim/schedule=linear"],
], ids=lambda r: "+".join(o.split("=")[1] for o in r if "/" in o))
def test_stop_mid_schedule_and_resume_equals_an_uninterrupted_run_exactly(tmp_path, recipe):
    cfg = compose_config(*RECIPE, *recipe)
    whole = run(cfg, tmp_path / "whole")
    with pytest.raises(SIGTERMException):
        run(compose_config(*RECIPE, *recipe), tmp_path / "split", callbacks=[PreemptAt(16)])
    assert load_checkpoint(tmp_path / "split" / "checkpoints" / "last.ckpt")["global_step"] == 17
    resumed = run(compose_config(*RECIPE, *recipe), tmp_path / "split")
    assert resumed["status"] == "completed" and resumed["resumed"] == 1
    assert curves(tmp_path / "whole") == curves(tmp_path / "split")  # every logged loss, bit for bit
    assert resumed["val_loss_final"] == whole["val_loss_final"]
    # the logged learning rate is the schedule's, before and after the resume
    optim = OmegaConf.to_container(cfg.optim, resolve=True)
    logged = {int(r["step"]): float(r["train/lr"]) for r in csv.DictReader(open(tmp_path / "split" / "metrics.csv"))
              if r.get("train/lr")}
    assert logged and any(step > 17 for step in logged)
    assert all(lr == pytest.approx(lr_at(step, optim), rel=1e-6) for step, lr in logged.items()), logged
    summary = json.loads((tmp_path / "split" / "summary.json").read_text())
    assert summary["status"] == "completed"


def test_the_readmes_schedule_example_registers_and_computes_what_it_says():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    block = next(b for b in readme.split("```python")[1:] if "@schedule.register" in b).split("```")[0]
    if "inverse_sqrt" not in schedule.names():  # registering twice is an error by design
        exec(block, {})
    cfg = {**optim_cfg(), "schedule": {"name": "inverse_sqrt"}}  # 100 warm-up steps
    assert lr_factor(49, cfg) == pytest.approx(50 / 101)
    assert lr_factor(100, cfg) == 1.0 and lr_factor(400, cfg) == pytest.approx(0.5)


def test_a_runs_record_states_the_fused_kernel_of_muons_adamw_half():
    from ablate.gpu import runtime

    model = tiny_model()
    fused = build_optimizer(model, optim_cfg("optim/optimizer=muon", "optim.fused=true"))
    plain = build_optimizer(model, optim_cfg("optim/optimizer=muon"))
    assert runtime(torch.device("cpu"), "32-true", fused, model)["fused_adamw"] is True
    assert runtime(torch.device("cpu"), "32-true", plain, model)["fused_adamw"] is False

"""The typed schema of every setting outside the model, and the checks of ranges and relations that types
cannot express: what ``ablate-train`` refuses, in one line, before anything is written.

Each group is a dataclass (``DataSchema``, ``OptimSchema``, ...); ``check_config`` merges each group of a
composed config into its schema, so OmegaConf type-checks every value and refuses a key the schema does not
know, then checks ranges and relations (``check_ranges``). The run keeps its config as composed: the schema
adds no key, so a run's identity (``ablate.train.run_identity``) is unchanged. The model's settings are
checked where the model is built (``ablate.model.GPTConfig``), its slots by the registry.

A new setting is a YAML line and a field here; ``tests/test_schema.py`` fails on a setting with no field.
"""

from __future__ import annotations

import math
import types
import typing
from dataclasses import dataclass, field, fields
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ablate.errors import ConfigError

# ---------------------------------------------------------------------------------------------------------------
# The schema: one dataclass per group. OmegaConf supports Optional, List and Dict of primitives; a setting that
# takes several types (trainer.devices: 1, -1, "auto", [0, 1]) is Any, and check_ranges says what it accepts.


@dataclass
class DataSchema:
    """``conf/data/*.yaml``: one schema for every dataset config (a setting a file does not have stays absent)."""

    _target_: str | None = None
    path: str | None = None
    val_path: str | None = None
    tokenizer: str = "char"
    val_fraction: float = 0.1
    batch_size: int = 12
    block_size: int = 64
    eval_batches: int = 20
    cache_dir: str | None = None
    threads: int | None = None


@dataclass
class OptimSchema:
    """``conf/optim``: the settings every optimizer and schedule shares. The optimizer and the schedule
    (``optim/optimizer``, ``optim/schedule``) are registry slots: their nodes are checked by the registry when
    built. A new shared setting is a field here."""

    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_steps: int = 100
    decay_steps: int = 2000
    weight_decay: float = 0.1
    betas: list[float] = field(default_factory=lambda: [0.9, 0.99])
    eps: float = 1e-8
    fused: bool | None = None
    max_loss: float = 1000.0
    optimizer: Any = None
    schedule: Any = None


@dataclass
class TrainerSchema:
    """``conf/trainer/*.yaml``: arguments of ``lightning.Trainer``. Besides the YAML's keys, a few Lightning
    arguments a run may add (``+trainer.accumulate_grad_batches=4``)."""

    _target_: str = "lightning.Trainer"
    accelerator: str = "auto"
    devices: Any = 1
    strategy: Any = None
    num_nodes: int = 1
    precision: Any = "32-true"
    max_steps: int = 2000
    val_check_interval: int = 250
    check_val_every_n_epoch: int | None = None
    num_sanity_val_steps: int = 0
    gradient_clip_val: float | None = 1.0
    gradient_clip_algorithm: str | None = None
    accumulate_grad_batches: int = 1
    log_every_n_steps: int = 10
    enable_progress_bar: bool = True
    enable_model_summary: bool = False
    deterministic: Any = None
    benchmark: bool | None = None
    detect_anomaly: bool = False


@dataclass
class LoggerSchema:
    """``conf/logger/wandb.yaml``."""

    mode: str = "auto"
    project: str = "ablate"
    entity: str | None = None
    group: str | None = None
    tags: list[str] = field(default_factory=list)
    name: str | None = None


@dataclass
class SampleSchema:
    """``sample`` in ``conf/config.yaml``: the text generated at evaluations during training."""

    prompt: str = "\n"
    max_new_tokens: int = 200
    temperature: float = 0.8
    top_k: int | None = 40
    every: int | None = 1000


@dataclass
class SweepSchema:
    """``sweep`` in ``conf/config.yaml``: set by a sweep."""

    name: str | None = None
    arm: str | None = None
    parent: str | None = None
    changes: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, Any] = field(default_factory=dict)
    baseline: str | None = None
    tune: list[str] = field(default_factory=list)
    point: str = ""
    margin: float | None = None
    compare: dict[str, str] = field(default_factory=dict)


@dataclass
class RootSchema:
    """The root keys of ``conf/config.yaml``; ``model`` is checked by ``GPTConfig``, the groups by their schemas."""

    seed: int = 1337
    threads: int | None = None
    resume: str | None = None


GROUPS: dict[str, type] = {
    "trainer": TrainerSchema, "data": DataSchema, "optim": OptimSchema, "logger": LoggerSchema,
    "sample": SampleSchema, "sweep": SweepSchema,
}
UNCHECKED = ("model",)  # checked where it is built (GPTConfig, the registry)

# Lightning's accepted values (lightning.fabric.plugins.precision.precision._PRECISION_INPUT) and accelerators
PRECISIONS = ("32-true", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "64-true", "transformer-engine",
              "transformer-engine-float16", "32", "16", "bf16", "64", 32, 16, 64)
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")
LOGGER_MODES = ("auto", "online", "offline", "disabled")
OUR_DATAMODULES = (None, "ablate.data.TextDataModule", "ablate.data.ShardDataModule")
MAX_SEED = 2**32 - 1  # Lightning's seed_everything raises a ValueError (a traceback) outside [0, 2**32 - 1]


def _optional(tp: Any) -> bool:
    """``X | None`` (or ``Optional[X]``)."""
    return typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in typing.get_args(tp)


def _describe(tp: Any) -> str:
    """A field's type in words: ``Optional[int]`` -> ``an integer or null``."""
    args = typing.get_args(tp)
    if _optional(tp):
        return f"{_describe(next(a for a in args if a is not type(None)))} or null"
    if typing.get_origin(tp) is list:
        return f"a list of {_describe(args[0]).split(' ', 1)[1]}s" if args else "a list"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(tp, "a value")


def _field_types(schema: type) -> dict[str, Any]:
    return typing.get_type_hints(schema)


def _strict_type_error(value: Any, tp: Any) -> bool:
    """OmegaConf converts what it can ('3' -> 3, 'yes' -> True, 1 -> True); a run would get the unconverted
    value, so a value whose Python type differs from the field's is refused (an integer for a number is fine)."""
    if value is None:
        return False
    args = typing.get_args(tp)
    if _optional(tp):
        tp = next(a for a in args if a is not type(None))
    if tp is bool:
        return not isinstance(value, bool)
    if tp is int:
        return not isinstance(value, int) or isinstance(value, bool)
    if tp is float:
        return not isinstance(value, (int, float)) or isinstance(value, bool)
    if tp is str:
        return not isinstance(value, str)
    if typing.get_origin(tp) is list:
        return not isinstance(value, list) or any(_strict_type_error(v, typing.get_args(tp)[0]) for v in value)
    return False


def unknown_keys(group: str, node: dict[str, Any]) -> list[str]:
    """The keys of a group's node that its schema has no field for."""
    names = {f.name for f in fields(GROUPS[group] if group in GROUPS else RootSchema)}
    return [k for k in node if k not in names]


def check_types(cfg: dict[str, Any]) -> None:
    """Every group of a resolved config against its schema: unknown keys and wrong types, one line each."""
    root = {k: v for k, v in cfg.items() if k not in GROUPS and k not in UNCHECKED}
    for group, schema in [("", RootSchema), *GROUPS.items()]:
        node = root if not group else cfg.get(group)
        if node is None:
            continue
        if group and not isinstance(node, dict):
            raise ConfigError(f"{group}={node!r} must be a config group; choose it with {group}=<option>")
        where = f"{group}." if group else ""
        types = _field_types(schema)
        extra = unknown_keys(group or "root", node)
        if extra and not (group == "data" and node.get("_target_") not in OUR_DATAMODULES):
            has = ", ".join(f.name for f in fields(schema) if f.name in node or not f.name.startswith("_"))
            raise ConfigError(f"{where}{extra[0]} is not a setting; {group or 'the root config'} has: {has} "
                              f"(a new setting needs a field in ablate.schema.{schema.__name__})")
        typed = OmegaConf.structured(schema)  # once per group: assigning to it checks each value's type
        for key, value in node.items():
            if key not in types:
                continue
            try:
                typed[key] = value
                wrong = _strict_type_error(value, types[key])
            except OmegaConfBaseException:
                wrong = True
            if wrong:
                raise ConfigError(f"{where}{key}={value!r} must be {_describe(types[key])}")


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _recipe_types(slot: str, node: dict[str, Any]) -> None:
    """A recipe variant's parameters have its registered defaults' types (``optim.schedule.decay_fraction=abc``
    is refused here in one line; an unknown parameter, by the composition and the registry)."""
    from ablate.registry import RECIPE_SLOTS

    if node.get("name") not in RECIPE_SLOTS[slot]:
        return  # the composition names the valid variants
    defaults = RECIPE_SLOTS[slot].get(node["name"]).params
    for key, value in node.items():
        if key not in defaults or defaults[key] is None:
            continue
        want = type(defaults[key])
        ok = (isinstance(value, bool) if want is bool else
              isinstance(value, (int, float)) and not isinstance(value, bool) if want is float else
              isinstance(value, want) and not isinstance(value, bool))
        if not ok:
            kind = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(want, str(want))
            raise ConfigError(f"optim.{slot}.{key}={value!r} must be {kind}")


def check_ranges(cfg: dict[str, Any]) -> list[str]:
    """Ranges and relations, on a resolved, type-checked config: raise the first violation as one line;
    return warnings (settings that are allowed but easy to get wrong) as lines."""
    checks: list[tuple[bool, str]] = []
    warnings: list[str] = []

    def need(ok: bool, message: str) -> None:
        checks.append((ok, message))

    seed, threads = cfg.get("seed"), cfg.get("threads")
    need(0 <= seed <= MAX_SEED, f"seed={seed!r} must be in [0, {MAX_SEED}]")
    need(threads is None or threads >= 1, f"threads={threads!r} must be a positive integer or null (all cores)")

    data = cfg.get("data") or {}
    for key in ("batch_size", "block_size", "eval_batches"):
        if key in data:
            need(_positive_int(data[key]), f"data.{key}={data[key]!r} must be a positive integer")
    if "val_fraction" in data:
        need(0 < data["val_fraction"] < 1, f"data.val_fraction={data['val_fraction']!r} must be in (0, 1)")
    if data.get("threads") is not None:
        need(data["threads"] >= 1, f"data.threads={data['threads']!r} must be a positive integer or null (every core)")
    if "tokenizer" in data:
        from ablate.tokenizers import TOKENIZERS

        need(data["tokenizer"] in TOKENIZERS,
             f"data.tokenizer={data['tokenizer']!r} is unknown; choose one of: {', '.join(TOKENIZERS)}")

    trainer = cfg.get("trainer") or {}
    steps = trainer.get("max_steps")
    if steps is not None:
        need(steps >= 1, f"trainer.max_steps={steps!r} must be a positive integer (a run of no steps has no loss)")
    for key in ("val_check_interval", "log_every_n_steps", "num_nodes", "accumulate_grad_batches"):
        if key in trainer:
            need(_positive_int(trainer[key]), f"trainer.{key}={trainer[key]!r} must be a positive integer (steps)"
                 if key != "num_nodes" else f"trainer.num_nodes={trainer[key]!r} must be a positive integer")
    if trainer.get("check_val_every_n_epoch") is not None:
        need(False, f"trainer.check_val_every_n_epoch={trainer['check_val_every_n_epoch']!r} must be null: training "
                    f"is one endless epoch, evaluated every trainer.val_check_interval steps")
    if "num_sanity_val_steps" in trainer:
        need(trainer["num_sanity_val_steps"] >= -1,
             f"trainer.num_sanity_val_steps={trainer['num_sanity_val_steps']!r} must be -1 (all), 0 or more")
    clip = trainer.get("gradient_clip_val")
    need(clip is None or (clip >= 0 and math.isfinite(clip)),
         f"trainer.gradient_clip_val={clip!r} must be a number >= 0 or null (no clipping)")
    algo = trainer.get("gradient_clip_algorithm")
    need(algo in (None, "norm", "value"), f"trainer.gradient_clip_algorithm={algo!r}: choose one of: norm, value")
    if "precision" in trainer:
        need(trainer["precision"] in PRECISIONS,
             f"trainer.precision={trainer['precision']!r} is not one of Lightning's: "
             f"{', '.join(p for p in PRECISIONS if isinstance(p, str) and '-' in p)}")
    if "accelerator" in trainer:
        need(trainer["accelerator"] in ACCELERATORS,
             f"trainer.accelerator={trainer['accelerator']!r}: choose one of: {', '.join(ACCELERATORS)}")
    devices = trainer.get("devices", 1)
    need(devices in ("auto", -1) or _positive_int(devices)
         or (isinstance(devices, list) and devices and all(_positive_int(d) or d == 0 for d in devices)),
         f"trainer.devices={devices!r} must be a positive integer, -1 (all), auto, or a list of device indices")

    optim = cfg.get("optim") or {}
    lr, min_lr = optim.get("lr"), optim.get("min_lr")
    if lr is not None:
        need(lr > 0 and math.isfinite(lr), f"optim.lr={lr!r} must be a positive number")
    if min_lr is not None:
        need(min_lr >= 0, f"optim.min_lr={min_lr!r} must be a number >= 0")
        if lr is not None and lr > 0:
            need(min_lr <= lr, f"optim.min_lr={min_lr!r} must not exceed optim.lr={lr!r} (the schedule decays to it)")
    warmup, decay = optim.get("warmup_steps"), optim.get("decay_steps")
    if warmup is not None:
        need(warmup >= 0, f"optim.warmup_steps={warmup!r} must be 0 (no warm-up) or more")
    if decay is not None:
        need(decay >= 1, f"optim.decay_steps={decay!r} must be a positive integer (the step the decay ends at)")
    if warmup is not None and steps is not None and warmup > steps >= 1:
        warnings.append(f"optim.warmup_steps={warmup} is longer than the run (trainer.max_steps={steps}): "
                        f"the learning rate never reaches optim.lr")
    if "weight_decay" in optim:
        need(optim["weight_decay"] >= 0, f"optim.weight_decay={optim['weight_decay']!r} must be a number >= 0")
    if "eps" in optim:
        need(optim["eps"] > 0, f"optim.eps={optim['eps']!r} must be a positive number")
    betas = optim.get("betas")
    if betas is not None:
        need(len(betas) == 2 and all(0 <= b < 1 for b in betas),
             f"optim.betas={betas!r} must be two numbers in [0, 1), e.g. [0.9, 0.99]")
    if "max_loss" in optim:
        need(optim["max_loss"] > 0, f"optim.max_loss={optim['max_loss']!r} must be a positive number (.inf: no limit)")
    for slot, node in ((slot, optim.get(slot)) for slot in ("optimizer", "schedule")):
        if isinstance(node, dict):  # a recipe variant's parameters: the registered defaults' types, then ranges
            _recipe_types(slot, node)
    schedule, optimizer = optim.get("schedule") or {}, optim.get("optimizer") or {}
    if "decay_fraction" in schedule:
        f = schedule["decay_fraction"]
        need(0 < f <= 1, f"optim.schedule.decay_fraction={f!r} must be in (0, 1] (the share of the run spent decaying)")
    if "momentum" in optimizer:
        need(0 <= optimizer["momentum"] < 1, f"optim.optimizer.momentum={optimizer['momentum']!r} must be in [0, 1)")
    if "ns_steps" in optimizer:
        need(optimizer["ns_steps"] >= 1,
             f"optim.optimizer.ns_steps={optimizer['ns_steps']!r} must be a positive integer")
    if optimizer.get("ns_dtype") is not None:
        need(optimizer["ns_dtype"] in ("bfloat16", "float32"),
             f"optim.optimizer.ns_dtype={optimizer['ns_dtype']!r}: choose one of: bfloat16, float32, "
             f"null (bfloat16 on GPUs, float32 elsewhere)")
    if "adjust_lr_fn" in optimizer:
        need(optimizer["adjust_lr_fn"] in ("match_rms_adamw", "original"),
             f"optim.optimizer.adjust_lr_fn={optimizer['adjust_lr_fn']!r}: choose one of: match_rms_adamw, original")

    logger = cfg.get("logger") or {}
    if "mode" in logger:
        need(logger["mode"] in LOGGER_MODES,
             f"logger.mode={logger['mode']!r}: choose one of: {', '.join(LOGGER_MODES)}")

    sample = cfg.get("sample") or {}
    if "prompt" in sample:
        need(len(sample["prompt"]) > 0, "sample.prompt='' must be at least one character (default: a newline)")
    if "max_new_tokens" in sample:
        need(sample["max_new_tokens"] >= 0,
             f"sample.max_new_tokens={sample['max_new_tokens']!r} must be 0 (no samples) or more")
    if "temperature" in sample:
        t = sample["temperature"]
        need(t > 0 and math.isfinite(t), f"sample.temperature={t!r} must be a positive number")
    if sample.get("every") is not None:
        need(sample["every"] >= 1,
             f"sample.every={sample['every']!r} must be a positive number of steps or null (every evaluation)")
    if sample.get("top_k") is not None:
        need(sample["top_k"] >= 1, f"sample.top_k={sample['top_k']!r} must be a positive integer or null (all tokens)")

    margin = (cfg.get("sweep") or {}).get("margin")
    need(margin is None or margin > 0, f"sweep.margin={margin!r} must be a positive number of nats or null")

    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    return warnings


def check_config(cfg: DictConfig | dict[str, Any]) -> list[str]:
    """Check a composed config's settings outside the model: raise ``ConfigError`` (one line) on a wrong type,
    an unknown key, a value out of range or an impossible relation; return warnings as lines."""
    links = _interpolations(cfg) if isinstance(cfg, DictConfig) else {}
    if isinstance(cfg, DictConfig):
        try:
            cfg = OmegaConf.to_container(cfg, resolve=True)
        except OmegaConfBaseException as e:
            key = getattr(e, "full_key", None)
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise ConfigError(f"{key}: {reason}" if key else reason) from None
    try:
        check_types(cfg)
        return check_ranges(cfg)
    except ConfigError as e:  # a value that comes from another setting names that setting too
        key = next((k for k in links if str(e).startswith(f"{k}=")), None)
        if key is None:
            raise
        raise ConfigError(f"{e} ({key} is {links[key]})") from None


def _interpolations(node: DictConfig, prefix: str = "") -> dict[str, str]:
    """Keys whose value is another setting's (``optim.decay_steps: ${trainer.max_steps}``), with that reference."""
    found = {}
    for key in node:
        path = f"{prefix}{key}"
        if OmegaConf.is_interpolation(node, key):
            found[path] = OmegaConf.to_container(node, resolve=False)[key]
        elif isinstance(node._get_node(key), DictConfig):
            found.update(_interpolations(node[key], f"{path}."))
    return found


"""Where the configs live, what a run is called, and checks that turn bad input into one clear line."""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import os
import re
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import OverrideType
from omegaconf import DictConfig, OmegaConf

import ablate.components  # noqa: F401  (registers the built-in variants and their config nodes)
import ablate.recipe  # noqa: F401  (registers the optimizers and schedules and their config nodes)
from ablate.errors import ConfigError
from ablate.registry import SLOTS

IMPORTS_ENV = "ABLATE_IMPORTS"


def _project_dir(name: str) -> Path:
    """A top-level folder (``conf``, ``sweeps``): shipped inside the package by a wheel install,
    the checkout's own with an editable install."""
    packaged = Path(__file__).parent / name
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[2] / name


def conf_dir() -> Path:
    return _project_dir("conf")


def sweeps_dir() -> Path:
    return _project_dir("sweeps")


def register_sweeps() -> None:
    """Make each ``sweeps/<name>.yaml`` the option ``sweeps=<name>``, a global override bundle.

    They are stored in Hydra's ConfigStore rather than added as a search path, so that Hydra never
    walks the checkout for config groups, and ``ablate-train sweeps=NAME`` works from any folder.
    """
    store = ConfigStore.instance()
    for path in sorted(sweeps_dir().glob("*.yaml")):
        store.store(group="sweeps", name=path.stem, node=OmegaConf.load(path), package="_global_")


def slug(text: str, limit: int = 120) -> str:
    """A folder name for a run's overrides: ``model/norm=post,seed=1`` -> ``model.norm=post,seed=1``."""
    text = re.sub(r"[^A-Za-z0-9=,.+_-]", "_", text.replace("/", ".")) or "default"
    if len(text) > limit:
        text = f"{text[: limit - 9]}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"
    return text


if not OmegaConf.has_resolver("ablate_slug"):
    OmegaConf.register_new_resolver("ablate_slug", slug)
if not OmegaConf.has_resolver("ablate_div"):
    # ${ablate_div:${optim.lr},10}: a setting tied to a tuned one (min_lr a tenth of lr, as nanoGPT advises)
    OmegaConf.register_new_resolver("ablate_div", lambda a, b: float(a) / float(b))
register_sweeps()


_imported: set[str] = set()


def import_user_modules() -> None:
    """Import the modules that register your own variants, before Hydra composes the config.

    Sources: installed packages' ``ablate.variants`` entry points, and ``$ABLATE_IMPORTS``, a
    comma-separated list of module names or ``.py`` files (``ABLATE_IMPORTS=my_variants.py``).
    """
    for ep in entry_points(group="ablate.variants"):
        if ep.value not in _imported:
            ep.load()
            _imported.add(ep.value)
    for item in filter(None, (s.strip() for s in os.environ.get(IMPORTS_ENV, "").split(","))):
        if item in _imported:
            continue
        if item.endswith(".py"):
            path = Path(item).expanduser().resolve()
            if not path.is_file():
                raise ConfigError(f"{IMPORTS_ENV}={item}: no such file; give module names or .py files")
            spec = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[path.stem] = module
            spec.loader.exec_module(module)
        else:
            try:
                importlib.import_module(item)
            except ModuleNotFoundError as e:
                raise ConfigError(f"{IMPORTS_ENV}={item}: cannot import module {e.name!r}") from None
        _imported.add(item)


def check_overrides(args: list[str]) -> None:
    """Fail with one line on an unknown config-group option (``model/norm=postt``) or an unknown key
    (``model.n_layr=3``), listing the valid ones; with ``sweeps=NAME``, in each of the sweep's arms too.

    Hydra would say it too, over several lines (for a sweep's arm, after writing the sweep's folder);
    this check runs first and says it in one.
    """
    overrides = [a for i, a in enumerate(args) if not a.startswith("-") and not _flag_value(args, i)]
    if not overrides:
        return  # the default config, which Hydra is about to compose anyway
    parser = OverridesParser.create()
    try:
        parsed = parser.parse_overrides(overrides)
    except Exception:
        return  # a syntax error: Hydra's own message names it
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        runs = []  # what jobs compose: each arm of the chosen sweep, or else the command line alone
        for sweep in _check_parsed(parsed, loader, check_keys=False):  # group options first, then keys per run
            spec = OmegaConf.to_container(OmegaConf.load(sweeps_dir() / f"{sweep}.yaml"))
            sweeper = (spec.get("hydra") or {}).get("sweeper") or {}
            if not sweeper:
                continue  # sweeps=none
            params = [f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()]  # as Hydra's sweeper does
            params += [f"{k}={tune_values(v)}" for k, v in (sweeper.get("tune") or {}).items()]
            for arm, more in (sweeper.get("arms") or {"": []}).items():
                where = f"sweeps={sweep}" + (f", arm {arm!r}" if arm else "") + ": "
                runs.append((where, [*params, *overrides, *more]))
        for where, run in runs or [("", overrides)]:
            try:
                parsed_run = parser.parse_overrides(run)
            except Exception as e:
                raise ConfigError(f"{where}{(str(e).strip().splitlines() or [''])[0]}") from None
            try:
                _check_parsed(parsed_run, loader)
                _check_values(parsed_run)
            except ConfigError as e:
                raise ConfigError(f"{where}{e}") from None
    GlobalHydra.instance().clear()


def _check_values(parsed: list[Any]) -> None:
    """Compose the runs these overrides describe (each value of a swept key in turn, the others at their first)
    and check their settings against the schema (``ablate.schema``): a wrong type or an impossible value stops
    here, in one line, before Hydra writes anything. Warnings are printed once. The first values are composed
    once; another value of a plain setting is put into a copy of that composition (composing again costs about
    a third of a second, which a sweep of many arms and values would pay before its first run), another option
    of a config group is composed."""
    lines, swept = [], []
    for override in parsed:
        if override.key_or_group.startswith("hydra"):
            continue
        if override.is_sweep_override():
            try:
                texts, values = list(override.sweep_string_iterator()), list(override.sweep_iterator())
            except Exception:
                continue  # an interval a search sweeper draws from (interval(1e-4, 1e-2)): left at its default
            swept.append((len(lines), override.get_key_element(), list(zip(texts, values))[1:]))
            lines.append(f"{override.get_key_element()}={texts[0]}")
        else:
            lines.append(override.input_line)
    try:
        base = compose(config_name="config", overrides=lines)
    except Exception:
        return  # a composition error: Hydra's own message names it
    warnings = list(_check_run(base))
    for i, key, values in swept:
        plain = key[0] not in "+~" and not OmegaConf.is_config(OmegaConf.select(base, key, default=None)) \
            and OmegaConf.select(base, key, default="<missing>") != "<missing>"
        for text, value in values:
            if plain:
                cfg = base.copy()
                OmegaConf.update(cfg, key, value, merge=False)
            else:
                try:
                    cfg = compose(config_name="config", overrides=[*lines[:i], f"{key}={text}", *lines[i + 1:]])
                except Exception:
                    continue
            warnings += [w for w in _check_run(cfg) if w not in warnings]
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)


def _check_run(cfg: DictConfig) -> list[str]:
    """One composed run's settings: the schema's checks (returning its warnings), then the model's as
    ``GPTConfig`` makes them where the model is built, so that a bad size or dropout is refused here, before
    Hydra starts the run and its imports."""
    from ablate.model import GPTConfig
    from ablate.schema import check_config

    warnings = check_config(cfg)
    GPTConfig.from_dict(OmegaConf.to_container(cfg.model, resolve=True), vocab_size=1)
    return warnings


# Hydra's flags that take a value as the next argument (``--cfg job``); ``--info``'s is optional
_VALUE_FLAGS = {"-c", "--cfg", "-p", "--package", "-cp", "--config-path", "-cn", "--config-name", "-cd",
                "--config-dir", "--experimental-rerun"}
_INFO_VALUES = {"all", "config", "defaults", "defaults-tree", "plugins", "searchpath"}


def tune_values(values: Any) -> str:
    """A tuned key's grid (``hydra.sweeper.tune``) in Hydra's sweep syntax: ``[3e-4, 1e-3]`` (a YAML list)
    or ``3e-4,1e-3`` both give ``3e-4,1e-3``."""
    if isinstance(values, (list, tuple)) or OmegaConf.is_list(values):
        return ",".join(str(v) for v in values)
    return str(values)


def _flag_value(args: list[str], i: int) -> bool:
    """Whether ``args[i]`` is the value of the Hydra flag before it, not an override."""
    before = args[i - 1] if i else ""
    return before in _VALUE_FLAGS or (before in ("-i", "--info") and args[i] in _INFO_VALUES)


def _check_parsed(parsed: list[Any], loader: Any, check_keys: bool = True) -> list[str]:
    """Check parsed overrides against the config groups and (``check_keys``) the config they compose;
    return the sweeps chosen."""
    groups, keys, sweeps = [], [], []  # the composition the first job gets, the plain keys it sets
    for override in parsed:
        group = override.key_or_group
        if override.is_delete() or group.startswith("hydra"):
            continue
        options = loader.get_group_options(group)
        if not options:
            if override.type == OverrideType.CHANGE:  # +key=... and ++key=... may add keys
                keys.append(group)
            elif not override.is_sweep_override():
                groups.append(override.input_line)
            continue  # not a config group: a plain value
        values = list(override.sweep_string_iterator()) if override.is_sweep_override() else [override.value()]
        for value in values:
            if isinstance(value, str) and value not in options:
                raise ConfigError(f"unknown {group}={value!r}; choose one of: {', '.join(options)}")
            if group == "sweeps":
                _check_sweeper_installed(value, loader.get_group_options("hydra/sweeper"))
                sweeps.append(value)
        groups.append(f"{override.get_key_element()}={values[0]}")
    if keys and check_keys:
        try:
            cfg = OmegaConf.to_container(compose(config_name="config", overrides=groups), resolve=False)
        except Exception:
            cfg = None  # a composition error: Hydra's own message names it
        for key in keys if isinstance(cfg, dict) else []:
            _check_key(key, cfg, loader.get_group_options)
    return sweeps


def _check_key(key: str, cfg: dict, group_options: Any) -> None:
    """A dotted key must name a node of the composed config (``cfg``, unresolved); one line if it does not."""
    node, parts = cfg, key.split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, dict):
            return  # a list index or a value Hydra itself will reject
        if part not in node:
            parent = ".".join(parts[:i])
            near = difflib.get_close_matches(part, [str(k) for k in node], n=1)
            group = key.replace(".", "/")
            if group_options(group):
                hint = f" ({group} is a config group: {group}=...)"
            elif near:
                hint = f" (did you mean {'.'.join([*parts[:i], near[0]])}?)"
            else:
                hint = ""
            keys = ", ".join(map(str, node))
            raise ConfigError(f"unknown key {key}{hint}; {parent or 'the root config'} has: {keys}")
        node = node[part]


def _check_sweeper_installed(sweep: str, sweepers: list[str]) -> None:
    """A sweep that needs another sweeper plugin (Optuna) says how to install it, in one line."""
    defaults = OmegaConf.load(sweeps_dir() / f"{sweep}.yaml").get("defaults", [])
    for entry in defaults:
        wanted = entry.get("override /hydra/sweeper") if not isinstance(entry, str) else None
        if wanted and wanted not in sweepers:
            raise ConfigError(
                f"sweeps={sweep} needs the {wanted} sweeper, which is not installed; pip install -e '.[search]'"
            )


def preset_choices(preset: str) -> dict[str, str]:
    """The variant each slot takes in a preset, read from its defaults list (``conf/model/<preset>.yaml``)."""
    path = conf_dir() / "model" / f"{preset}.yaml"
    if not path.is_file():
        return {}
    defaults = OmegaConf.load(path).get("defaults", [])
    return {k: v for entry in defaults if not isinstance(entry, str) for k, v in entry.items() if k in SLOTS}


def run_name(model_cfg: Any, choices: dict[str, str], seed: int) -> str:
    """The preset plus what differs from it, e.g. ``gpt2-norm=post-activation=relu-s1337``."""
    preset = model_cfg.get("preset") or "custom"
    base = preset_choices(preset)
    diffs = [f"{slot}={name}" for slot, name in choices.items() if base.get(slot) != name]
    return "-".join([preset, *diffs, f"s{seed}"])

"""Slots and their variants: the registry every ablation axis is built from.

A *slot* is one axis of an ablation (where positions enter, which activation, ...). A *variant*
is one class (or function) registered into a slot by a decorator::

    @activation.register("relu")
    class ReLU(nn.ReLU): ...

Registering also stores the variant's config node ``{name: relu, **params}`` in Hydra's
ConfigStore under the group ``model/<slot>`` (``optim/<slot>`` for the training recipe's slots), so
``ablate-train model/activation=relu`` works, ``--help`` lists it, and a sweep can say
``-m model/activation=relu,gelu`` with no YAML to write.
Hydra's ConfigStore silently overwrites a duplicate; the registry refuses one instead.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from hydra.core.config_store import ConfigStore

from ablate.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class Variant:
    """A registered variant: its name, the class or function that builds it, its default params."""

    name: str
    target: Callable[..., Any]
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def doc(self) -> str:
        return (self.target.__doc__ or "").strip().split("\n")[0]


class Slot:
    """One ablation axis: a set of interchangeable variants, exposed as the Hydra group ``<parent>/<name>``:
    the model's slots (``model/norm``) or the training recipe's (``optim/optimizer``, ``optim/schedule``)."""

    def __init__(self, name: str, doc: str, parent: str = "model") -> None:
        self.name = name
        self.doc = doc
        self.parent = parent
        self._variants: dict[str, Variant] = {}
        REGISTRIES[parent][name] = self

    @property
    def group(self) -> str:
        return f"{self.parent}/{self.name}"

    def register(self, name: str, **params: Any) -> Callable[[T], T]:
        """Register the decorated class or function as variant ``name`` with default ``params``."""

        def decorator(target: T) -> T:
            if name in self._variants:
                old = self._variants[name].target
                raise ConfigError(
                    f"{self.group}={name} is already registered (by {old.__module__}.{old.__qualname__}); "
                    f"pick a new name, taken: {', '.join(self.names())}"
                )
            self._variants[name] = Variant(name, target, dict(params))  # type: ignore[arg-type]
            ConfigStore.instance().store(group=self.group, name=name, node={"name": name, **params})
            return target

        return decorator

    def names(self) -> list[str]:
        return sorted(self._variants)

    def __contains__(self, name: object) -> bool:
        return name in self._variants

    def get(self, name: str) -> Variant:
        if name not in self._variants:
            raise ConfigError(f"unknown {self.group}={name!r}; choose one of: {', '.join(self.names())}")
        return self._variants[name]

    def build(self, node: Mapping[str, Any] | str, *args: Any, **kwargs: Any) -> Any:
        """Call the variant named by ``node`` (a config node or a bare name) with its params from the node."""
        if isinstance(node, str):
            node = {"name": node}
        variant = self.get(node["name"])
        params = {**variant.params, **{k: v for k, v in node.items() if k != "name"}}
        unknown = set(params) - set(variant.params)
        if unknown:
            raise ConfigError(
                f"{self.group}={variant.name} takes no parameter {sorted(unknown)[0]!r}; "
                f"its parameters: {', '.join(sorted(variant.params)) or 'none'}"
            )
        return variant.target(*args, **kwargs, **params)


SLOTS: dict[str, Slot] = {}  # the model's slots, by name
RECIPE_SLOTS: dict[str, Slot] = {}  # the training recipe's slots (optimizer, schedule), by name
REGISTRIES: dict[str, dict[str, Slot]] = {"model": SLOTS, "optim": RECIPE_SLOTS}

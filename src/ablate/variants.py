"""``ablate-variants``: every slot, its variants (with their parameters) and what each preset picks."""

from __future__ import annotations

from omegaconf import OmegaConf

from ablate.config import conf_dir, import_user_modules, preset_choices
from ablate.registry import RECIPE_SLOTS, SLOTS


def describe() -> str:
    import_user_modules()
    presets = sorted(p.stem for p in (conf_dir() / "model").glob("*.yaml"))
    picks = {p: preset_choices(p) for p in presets}
    lines = []
    for slot in SLOTS.values():
        lines.append(f"{slot.group}: {slot.doc}")
        for name in slot.names():
            variant = slot.get(name)
            params = ", ".join(f"{k}={v}" for k, v in variant.params.items())
            used = [p for p in presets if picks[p].get(slot.name) == name]
            tail = f"  [{', '.join(used)}]" if used else ""
            lines.append(f"  {name:<16} {variant.doc}{f' ({params})' if params else ''}{tail}")
        lines.append("")
    lines.append(f"Presets (model=...): {', '.join(presets)}; [..] marks each preset's pick.")
    lines.append("Switch one: ablate-train model/norm=post   Sweep: ablate-train -m model/norm=pre,post")
    lines.append("")
    lines.append("The training recipe (the same for every preset; [default] marks the default):")
    defaults = {k: v for entry in OmegaConf.load(conf_dir() / "optim" / "default.yaml").defaults
                if not isinstance(entry, str) for k, v in entry.items()}
    for slot in RECIPE_SLOTS.values():
        lines.append(f"{slot.group}: {slot.doc}")
        for name in slot.names():
            variant = slot.get(name)
            params = ", ".join(f"{k}={v}" for k, v in variant.params.items())
            tail = "  [default]" if defaults.get(slot.name) == name else ""
            lines.append(f"  {name:<16} {variant.doc}{f' ({params})' if params else ''}{tail}")
        lines.append("")
    lines.append("Switch one: ablate-train optim/optimizer=muon optim/schedule=wsd optim.schedule.decay_fraction=0.1")
    return "\n".join(lines)


def main() -> None:
    print(describe())


if __name__ == "__main__":
    main()

"""``ablate-variants``: every slot, its variants (with their parameters) and what each preset picks."""

from __future__ import annotations

from ablate.config import conf_dir, import_user_modules, preset_choices
from ablate.registry import SLOTS


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
    return "\n".join(lines)


def main() -> None:
    print(describe())


if __name__ == "__main__":
    main()

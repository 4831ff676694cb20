"""``ablate-sample``: generate text from a training checkpoint."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from ablate.errors import AblateError, ArgumentParser, CheckpointError


def load_checkpoint(path: str | Path, device: str = "cpu"):
    """The trained LightningModule in a checkpoint, rebuilt from its saved hyperparameters (no code runs)."""
    from ablate.config import import_user_modules
    from ablate.lit import LitGPT

    path = Path(path).expanduser()
    if path.is_dir():  # a run's output folder
        path = path / "checkpoints" / "last.ckpt"
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: no such file; give a .ckpt file or a run's output folder")
    import_user_modules()
    try:
        module = LitGPT.load_from_checkpoint(path, map_location=device, weights_only=True)
    except AblateError:
        raise
    except Exception as e:
        raise CheckpointError(f"checkpoint {path} cannot be loaded ({type(e).__name__}: {str(e)[:200]})") from None
    return module.eval()


def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(prog="ablate-sample", description=__doc__)
    parser.add_argument("checkpoint", help="a .ckpt file, or a run's output folder (uses checkpoints/last.ckpt)")
    parser.add_argument("--prompt", default="\n", help="text to continue (default: a newline)")
    parser.add_argument("--max-new-tokens", type=int, default=500)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--top-k", type=int, default=200, help="sample among the k likeliest tokens (0: all)")
    parser.add_argument("--num-samples", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    for name in ("max_new_tokens", "num_samples"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')}={getattr(args, name)} must be a positive integer")
    if args.temperature <= 0:
        parser.error(f"--temperature={args.temperature} must be positive")
    try:
        module = load_checkpoint(args.checkpoint, args.device)
        ids = module.tokenizer.encode(args.prompt)
    except AblateError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    generator = torch.Generator(device=args.device).manual_seed(args.seed)
    prompt = torch.tensor([ids], dtype=torch.long, device=args.device)
    for i in range(args.num_samples):
        out = module.model.generate(prompt, args.max_new_tokens, args.temperature, args.top_k or None, generator)
        if i:
            print("\n" + "-" * 40)
        print(module.tokenizer.decode(out[0].tolist()))


if __name__ == "__main__":
    main()

"""Checkpoints that survive crashes: atomic writes, a save on SIGTERM, and clear refusals of bad ones.

Every checkpoint is loaded with ``torch.load(weights_only=True)``: loading never runs code from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from ablate.atomic import atomic_open
from ablate.errors import CheckpointError

LAST = "last.ckpt"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file beside it, then renames it into place: a kill during
    the write leaves the previous checkpoint whole and no half-written file behind."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        with atomic_open(path) as f:
            torch.save(checkpoint, f)

    def load_checkpoint(self, path: str | Path, map_location: Any = None, weights_only: bool | None = True) -> Any:
        return load_checkpoint(path, map_location)


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """A checkpoint's contents, or one line saying why it cannot be used."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: no such file")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        reason = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"checkpoint {path} is corrupted or truncated ({reason})") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"checkpoint {path} is not an ablate training checkpoint (no state_dict)")
    return checkpoint


def check_compatible(checkpoint: dict[str, Any], path: Path, model: dict[str, Any], tokenizer: dict[str, Any]) -> None:
    """Refuse to resume from a checkpoint of another architecture or vocabulary, naming the first difference."""
    saved = checkpoint.get("hyper_parameters", {})
    if saved.get("tokenizer") != tokenizer:
        kind = saved.get("tokenizer", {}).get("kind")
        raise CheckpointError(
            f"checkpoint {path} was trained with another vocabulary (data.tokenizer={kind}, "
            f"{len(saved.get('tokenizer', {}).get('chars', '')) or 'BPE'} symbols); this run's data differs"
        )
    # what changes no parameter's meaning may differ: fine-tuning with other dropout or init is fine
    ignore = {"compile", "init_from", "preset", "dropout", "attn_dropout", "init"}
    for key in sorted((set(model) | set(saved.get("model", {}))) - ignore):
        ours, theirs = model.get(key), saved.get("model", {}).get(key)
        if ours != theirs:
            raise CheckpointError(
                f"checkpoint {path} has model.{key}={_show(theirs)} but this run has model.{key}={_show(ours)}"
            )


def _show(value: Any) -> str:
    return value["name"] if isinstance(value, dict) and "name" in value else repr(value)


class LastCheckpoint(Callback):
    """Keeps ``checkpoints/last.ckpt``: saved at the end of every evaluation during training, at the end of
    training, and on SIGTERM (what SLURM sends before pre-emption) or Ctrl-C.

    An evaluation's checkpoint comes once that step's losses are in the run's record: Lightning's
    ``ModelCheckpoint(every_n_train_steps=...)`` saves at the end of the training batch, before them, and a run
    killed right after such a save resumed past that step without ever logging it. Lightning turns SIGTERM into
    a ``SIGTERMException`` at the end of the current step, so the state saved is that of a whole step; relaunching
    the run resumes from it.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.interrupted: str | None = None
        self.saved_step: int | None = None

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking:
            self._save(trainer, pl_module)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self._save(trainer, pl_module)

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        if isinstance(exception, (SIGTERMException, KeyboardInterrupt)):
            self.interrupted = f"{type(exception).__name__} at step {trainer.global_step}"
            self._save(trainer, pl_module)

    def _save(self, trainer: Any, pl_module: Any) -> None:
        # a diverged run keeps its last checkpoint from before the divergence (Lightning evaluates as it stops)
        if self.saved_step != trainer.global_step and not pl_module.diverged:
            trainer.save_checkpoint(self.path, weights_only=False)  # all of it: a resume needs the optimizer and loops
            self.saved_step = trainer.global_step

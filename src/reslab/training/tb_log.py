"""TensorBoard event files in the run directory: one scalar per metrics.jsonl value, step = epoch.

`tensorboard --logdir runs/` shows every run. Only rank 0 writes. The scalars of an epoch are written
(and flushed) before that epoch's last.pt, so the event files always hold every epoch the checkpoint
holds; a resumed run opens a new events file with purge_step = the checkpoint's epoch + 1, which makes
TensorBoard drop the older files' events of the epochs that are trained again. tensorboard is imported
only when a run logs its first epoch, so `import reslab` stays light.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ReslabError

# The metrics.jsonl keys logged as scalars (epoch is the step; step counts optimiser steps).
SCALAR_KEYS = ("train_loss", "train_error", "val_loss", "val_error", "lr", "seconds", "images_per_second")


class EpochLog:
    """Appends each epoch's metrics row to TensorBoard event files in `run_dir`.

    resumed_epoch: the epoch of the checkpoint the run continued from (0 for a new run). The writer is
    opened on the first row, so a run with nothing left to train leaves no empty events file."""

    def __init__(self, run_dir: str | Path, resumed_epoch: int = 0) -> None:
        self.run_dir = Path(run_dir)
        self.resumed_epoch = int(resumed_epoch)
        self._writer: Any = None

    def _open(self) -> Any:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:  # tensorboard is a core dependency; a broken install says so in one line
            raise ReslabError(
                f"TensorBoard logging needs the tensorboard package ({exc}): pip install tensorboard"
            ) from None
        purge_step = self.resumed_epoch + 1 if self.resumed_epoch > 0 else None
        try:
            return SummaryWriter(log_dir=str(self.run_dir), purge_step=purge_step)
        except OSError as exc:
            raise ReslabError(f"cannot write TensorBoard events to {str(self.run_dir)!r}: {exc}") from None

    def log(self, row: dict[str, Any]) -> None:
        """Write row's scalars at step row['epoch'] and flush them to disk."""
        if self._writer is None:
            self._writer = self._open()
        epoch = int(row["epoch"])
        for key in SCALAR_KEYS:
            value = row.get(key)
            if value is not None:
                self._writer.add_scalar(key, float(value), global_step=epoch)
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.close()

    def __enter__(self) -> EpochLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

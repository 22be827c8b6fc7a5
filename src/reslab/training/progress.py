"""Terminal progress for a run: a rich bar (loss, error, images/s, ETA) and one line per epoch."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class RunProgress:
    """Epoch bars and epoch lines; silent when quiet (the final result is printed by the caller)."""

    def __init__(self, console: Console, total_epochs: int, quiet: bool = False) -> None:
        self.console = console
        self.total_epochs = total_epochs
        self.quiet = quiet
        self.progress: Progress | None = None
        self.task: Any = None
        self.started = 0.0
        self.images = 0

    def __enter__(self) -> RunProgress:
        # A live bar only on a terminal: in a log file it would leave blank lines, not progress.
        if not self.quiet and self.console.is_terminal:
            self.progress = Progress(
                TextColumn("[bold]epoch {task.fields[epoch]}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}  err {task.fields[err]}  {task.fields[ips]} img/s"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=self.console,
                transient=True,
                refresh_per_second=4,
            )
            self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)

    def start_epoch(self, epoch: int, steps: int) -> None:
        self.started = time.perf_counter()
        self.images = 0
        if self.progress is None:
            return
        label = f"{epoch}/{self.total_epochs}"
        if self.task is None:
            self.task = self.progress.add_task("train", total=steps, epoch=label, loss="-", err="-", ips="-")
        else:
            self.progress.reset(self.task, total=steps, epoch=label, loss="-", err="-", ips="-")

    def advance(self, images: int) -> None:
        self.images += images
        if self.progress is not None:
            self.progress.advance(self.task)

    def show(self, loss: float, error: float) -> None:
        """New running numbers (called where the engine syncs anyway, a few times per epoch)."""
        if self.progress is None:
            return
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        self.progress.update(
            self.task, loss=f"{loss:.4f}", err=f"{100 * error:.2f}%", ips=f"{self.images / elapsed:,.0f}"
        )

    def epoch_line(self, row: dict[str, Any], best: bool) -> None:
        if self.quiet:
            return
        width = len(str(self.total_epochs))
        self.console.print(
            f"epoch {row['epoch']:>{width}}/{self.total_epochs}  lr {row['lr']:.4g}  "
            f"train loss {row['train_loss']:.4f} err {100 * row['train_error']:5.2f}%  "
            f"val loss {row['val_loss']:.4f} err {100 * row['val_error']:5.2f}%  "
            f"{row['seconds']:.1f}s {row['images_per_second']:,.0f} img/s" + ("  *" if best else ""),
            highlight=False,
        )

    def message(self, text: str) -> None:
        if not self.quiet:
            self.console.print(text, highlight=False)

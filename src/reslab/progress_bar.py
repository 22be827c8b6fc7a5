"""A rich progress bar that counts items and shows their rate (images/s), for commands over many files."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TimeElapsedColumn
from rich.text import Text


class _RateColumn(ProgressColumn):
    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.1f} {self.unit}/s" if speed else f"- {self.unit}/s")


@contextlib.contextmanager
def counting_progress(console: Console, total: int, unit: str) -> Iterator[Callable[[int], None]]:
    """Yields advance(n). Drawn only on a terminal, so piped output and logs stay clean."""
    columns = (BarColumn(), MofNCompleteColumn(), _RateColumn(unit), TimeElapsedColumn())
    with Progress(*columns, console=console, disable=not console.is_terminal, transient=False) as progress:
        task = progress.add_task(unit, total=total)
        yield lambda n: progress.advance(task, n)

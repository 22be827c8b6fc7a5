"""What the experiments share: their description (`Experiment`: a results file, a table and a plot),
their results files, JSON read back in one line or not at all, and mean ± std as the tables print it."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..atomic import write_json
from ..errors import ReslabError
from ..stats import mean_std

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from rich.console import Console

Results = dict[str, Any]


@dataclass(frozen=True)
class Experiment:
    """One of the papers' experiments, described beside its compute functions (`reslab <name>` runs it).

    Its results dict is saved as `results_file` under the experiment folder (a file per experiment, so
    experiments can share a folder); `table` and `plot` read only that dict. Reading it back needs in it
    `entries` (the top-level key: a list of runs or a dict of models), each entry holding `needed_keys`
    (what the table and the plot read).
    """

    name: str
    help: str
    results_file: str
    entries: str
    needed_keys: frozenset[str]
    table: Callable[[Results, Console], None]
    plot: Callable[[Results], Figure]

    @property
    def default_out(self) -> str:
        return f"runs/{self.name}"

    def results_path(self, out: str | Path) -> Path:
        return Path(out) / self.results_file

    def save_results(self, out: str | Path, results: Results) -> Path:
        """Write the results file, marked with the experiment's name for reading back to check."""
        return write_json(self.results_path(out), {"experiment": self.name, **results})

    def results(self, out: str | Path, compute: Callable[[], Results], *, replot: bool = False) -> Results:
        """The experiment's results under `out`: computed and saved, or with `replot` read back from there
        (one line, never a traceback, when the file is missing, unreadable, another experiment's, or lacks
        what the table and the plot read)."""
        if not replot:
            results = compute()
            self.save_results(out, results)
            return results
        path = self.results_path(out)
        if not path.is_file():
            raise ReslabError(
                f"no saved {self.name} results at {str(path)!r}; run the experiment first (without replot)",
                params=("replot",),
            )
        data = read_json(path)
        found = data.get("experiment", self.name) if isinstance(data, dict) else self.name
        if found != self.name:
            raise ReslabError(
                f"{str(path)!r} holds {found} results, not {self.name} results; check out", params=("out",)
            )
        entries = data.get(self.entries) if isinstance(data, dict) else None
        entries = (
            list(entries.values()) if isinstance(entries, dict) and self.entries == "models" else entries
        )
        if (
            not isinstance(entries, list)
            or not entries
            or not all(isinstance(e, dict) and self.needed_keys <= set(e) for e in entries)
        ):
            raise ReslabError(
                f"{str(path)!r} is not a {self.name} results file (it needs {self.entries!r} entries with "
                f"{', '.join(sorted(self.needed_keys))}); check out",
                params=("out",),
            )
        return data


def read_json(path: Path, advice: str = "") -> Any:
    """A JSON file's content; a missing, unreadable or malformed file is one ReslabError line (ending in
    `advice`, what to do about it, when given)."""
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        if advice:
            raise ReslabError(f"cannot read {str(path)!r} ({exc}); {advice}") from None
        raise ReslabError(f"cannot read {str(path)!r}: {exc}") from None


def checkpoint_key(taken: dict[str, Any], name: str, checkpoint_path: str) -> str:
    """A model's key in a results file: its name, with its run folder when another checkpoint has it too."""
    return f"{name} ({Path(checkpoint_path).parent.name})" if name in taken else name


def format_pm(values: Sequence[float], percent: bool = True, digits: int = 2) -> str:
    """'m ± s' (as percentages for error fractions); a single value prints alone."""
    mean, std = mean_std(values)
    scale, unit = (100.0, "%") if percent else (1.0, "")
    if len(values) == 1:
        return f"{mean * scale:.{digits}f}{unit}"
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}{unit}"


def require_at_least_one(name: str, value: int) -> None:
    """The experiments' counts (seeds, num_batches, ...) must be positive; `name` is the parameter's."""
    if value < 1:
        raise ReslabError(f"{name} must be at least 1, got {value}", params=(name,))

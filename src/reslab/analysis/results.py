"""Shared by the experiments: mean ± std over seeds, and results files written atomically."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ReslabError
from ..training.run_dir import write_json


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    if not values:
        raise ValueError("mean_std of no values")
    mean = sum(values) / len(values)
    if len(values) == 1:
        return mean, 0.0
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(var)


def columnwise_mean_std(rows: Sequence[Sequence[float]]) -> tuple[list[float], list[float]]:
    """Per-position mean and std of equally long sequences (one per seed)."""
    if not rows or any(len(r) != len(rows[0]) for r in rows):
        raise ValueError("columnwise_mean_std needs equally long, non-empty rows")
    pairs = [mean_std([r[i] for r in rows]) for i in range(len(rows[0]))]
    return [m for m, _ in pairs], [s for _, s in pairs]


def format_pm(values: Sequence[float], percent: bool = True, digits: int = 2) -> str:
    """'m ± s' (as percentages for error fractions); a single value prints alone."""
    mean, std = mean_std(values)
    scale, unit = (100.0, "%") if percent else (1.0, "")
    if len(values) == 1:
        return f"{mean * scale:.{digits}f}{unit}"
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}{unit}"


def require_at_least_one(flag: str, value: int) -> None:
    """The experiments' counts (--seeds, --epochs, --batches, ...) must be positive."""
    if value < 1:
        raise ReslabError(f"{flag} must be at least 1, got {value}")


# Each experiment's results file, and what --replot needs in it: the top-level key and, in each of its
# entries, the keys the table and the plot read. Files are per experiment, so experiments can share --out.
RESULT_FILES = {
    "degradation": "results.json",
    "gradients": "gradients.json",
    "responses": "responses.json",
    "ablation": "ablation.json",
}
_NEEDED = {
    "degradation": ("runs", {"kind", "depth", "seed", "train_error", "val_error", "test_error", "curve"}),
    "ablation": ("runs", {"order", "seed", "train_error", "val_error", "test_error", "curve"}),
    "gradients": ("models", {"unit_grad_norm", "weight_grad_norm", "first_last_ratio"}),
    "responses": ("models", {"std", "std_sorted"}),
}


def results_path(out: str | Path, experiment: str) -> Path:
    return Path(out) / RESULT_FILES[experiment]


def save_results(out: str | Path, experiment: str, results: dict[str, Any]) -> Path:
    """Write an experiment's results file, marked with the experiment's name for --replot to check."""
    path = results_path(out, experiment)
    write_json(path, {"experiment": experiment, **results})
    return path


def read_results(out: str | Path, experiment: str) -> dict[str, Any]:
    """Load an experiment's saved results for --replot: one line, never a traceback, when the file is
    missing, unreadable, another experiment's, or lacks what the plot needs."""
    path = results_path(out, experiment)
    if not path.is_file():
        raise ReslabError(
            f"no saved {experiment} results at {str(path)!r}; run the experiment first (without --replot)"
        )
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReslabError(f"cannot read {str(path)!r}: {exc}") from None
    found = data.get("experiment", experiment) if isinstance(data, dict) else experiment
    if found != experiment:
        raise ReslabError(f"{str(path)!r} holds {found} results, not {experiment} results; check --out")
    key, fields = _NEEDED[experiment]
    entries = data.get(key) if isinstance(data, dict) else None
    entries = list(entries.values()) if isinstance(entries, dict) and key == "models" else entries
    if (
        not isinstance(entries, list)
        or not entries
        or not all(isinstance(e, dict) and fields <= set(e) for e in entries)
    ):
        raise ReslabError(
            f"{str(path)!r} is not a {experiment} results file (it needs {key!r} entries with "
            f"{', '.join(sorted(fields))}); check --out"
        )
    return data

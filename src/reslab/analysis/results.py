"""Shared by the experiments: mean ± std over seeds, and results files written atomically."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ReslabError


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


def write_json(path: str | Path, data: Any) -> Path:
    """Write JSON atomically (temp file in the same folder, then rename), so a crash never leaves half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=1)
            handle.write("\n")
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_results(path: str | Path, what: str) -> dict[str, Any]:
    """Load a saved results file for --replot, with a clear error when there is none."""
    path = Path(path)
    if not path.is_file():
        raise ReslabError(f"no saved {what} at {str(path)!r}; run the experiment first (without --replot)")
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ReslabError(f"cannot read {str(path)!r}: {exc}") from None
    if not isinstance(data, dict):
        raise ReslabError(f"{str(path)!r} is not a {what} file")
    return data

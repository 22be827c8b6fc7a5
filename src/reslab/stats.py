"""Mean ± std over seeds, for the experiments' tables and the plots' curves."""

from __future__ import annotations

import math
from collections.abc import Sequence


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

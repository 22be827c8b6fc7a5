"""The run directory: config.json, metrics.jsonl, test.json, curves.png (checkpoints: checkpoint.py; the
curves: plots.plot_curves).

JSON files are replaced atomically (atomic.write_json); metrics.jsonl is rewritten from the checkpoint's history on resume, so
a run killed at any moment never shows a duplicate or half-written epoch.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_text

METRIC_KEYS = (
    "epoch",
    "step",
    "lr",
    "train_loss",
    "train_error",
    "val_loss",
    "val_error",
    "seconds",
    "images_per_second",
)


def default_run_dir(model_name: str, data_spec: str, root: str | Path = "runs") -> Path:
    """runs/<model>-<data>-<timestamp>; the data spec's path part is dropped (cifar10:/x/y -> cifar10)."""
    data_name = re.sub(r"[^A-Za-z0-9_.-]+", "_", data_spec.partition(":")[0]) or "data"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(root) / f"{model_name}-{data_name}-{stamp}"
    suffix = 1
    while path.exists():
        suffix += 1
        path = Path(root) / f"{model_name}-{data_name}-{stamp}-{suffix}"
    return path


def write_metrics(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    """Replace metrics.jsonl with `rows` (used on resume and at each epoch's end)."""
    atomic_write_text(run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in rows))


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        if line.strip():
            rows.append(json.loads(line))
    return rows

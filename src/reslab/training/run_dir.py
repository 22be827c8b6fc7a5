"""The run directory: config.json, metrics.jsonl + metrics.csv, test.json, curves.png, TensorBoard event
files (checkpoints: checkpoint.py; the curves: plots.plot_curves; the events: tb_log).

JSON and CSV files are replaced atomically (atomic.write_json); metrics.jsonl and metrics.csv are rewritten
from the checkpoint's history on resume, so a run killed at any moment never shows a duplicate or
half-written epoch.
"""

from __future__ import annotations

import csv
import io
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


def metrics_columns(rows: list[dict[str, Any]]) -> list[str]:
    """METRIC_KEYS, then any other key the rows hold, in the order first seen."""
    columns = list(METRIC_KEYS)
    for row in rows:
        columns += [key for key in row if key not in columns]
    return columns


def metrics_csv(rows: list[dict[str, Any]]) -> str:
    """The rows as CSV: a header row, one line per epoch; floats as repr (they read back exactly), an
    absent value as an empty field."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=metrics_columns(rows), restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_metrics(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    """Replace metrics.jsonl and metrics.csv with `rows` (used on resume and at each epoch's end)."""
    run_dir = Path(run_dir)
    atomic_write_text(run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    atomic_write_text(run_dir / "metrics.csv", metrics_csv(rows))


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        if line.strip():
            rows.append(json.loads(line))
    return rows

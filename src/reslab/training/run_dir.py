"""The run directory: config.json, metrics.jsonl, test.json, curves.png (checkpoints: checkpoint.py).

JSON files are replaced atomically; metrics.jsonl is rewritten from the checkpoint's history on resume, so
a run killed at any moment never shows a duplicate or half-written epoch.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from ..atomic import atomic_path, atomic_write_text

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


def write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(data, indent=1) + "\n")


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


def plot_curves(path: Path, rows: list[dict[str, Any]], title: str = "") -> None:
    """Loss and error (train and validation) against epoch, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in rows]
    fig, (ax_loss, ax_err) = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in ((ax_loss, "loss", "loss"), (ax_err, "error", "error (%)")):
        scale = 100.0 if key == "error" else 1.0
        for split, style in (("train", "-"), ("val", "--")):
            ax.plot(epochs, [r[f"{split}_{key}"] * scale for r in rows], style, label=split)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    # Log-like above 1% (where error falls by orders of magnitude) and linear below, so 0% still shows.
    ax_err.set_yscale("symlog", linthresh=1.0)
    ax_err.set_ylim(bottom=0)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    _save_figure(fig, path)
    plt.close(fig)


def plot_confusion(path: Path, confusion: list[list[int]], class_names: list[str], title: str = "") -> None:
    """A confusion matrix (rows: true class, columns: predicted), counts printed in cells when few."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    matrix = np.asarray(confusion)
    k = len(class_names)
    size = min(4 + 0.45 * k, 24)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    if k <= 30:
        ax.set_xticks(range(k), class_names, rotation=90 if k > 10 else 0)
        ax.set_yticks(range(k), class_names)
        threshold = matrix.max() / 2 if matrix.size else 0
        for i in range(k):
            for j in range(k):
                if matrix[i, j]:
                    color = "white" if matrix[i, j] > threshold else "black"
                    ax.text(j, i, str(matrix[i, j]), ha="center", va="center", color=color, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    _save_figure(fig, path)
    plt.close(fig)


def _save_figure(fig: Any, path: Path) -> None:
    path = Path(path)
    with atomic_path(path, suffix=path.suffix) as tmp:  # matplotlib picks the format from the suffix
        fig.savefig(tmp, dpi=100)

"""Evaluate a model on a split held on the device: loss, error, per-class accuracy, confusion matrix."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .data import DeviceBatches, Split
from .precision import Precision


def evaluate_split(
    model: nn.Module,
    split: Split,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    precision: Precision,
    num_classes: int,
    *,
    batch_size: int = 500,
    confusion: bool = True,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, Any]:
    """One pass over `split` in eval mode; one host sync at the end. Errors are fractions.
    reduce: sums the loss and the confusion counts in place over processes (each evaluated its shard)."""
    was_training = model.training
    model.eval()
    device = split.images.device
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    counts = torch.zeros(num_classes * num_classes, device=device, dtype=torch.int64)
    batches = DeviceBatches(split, batch_size, mean, std, channels_last=precision.channels_last)
    try:
        with torch.inference_mode(), precision.autocast():
            for x, y in batches:
                logits = model(x).float()
                loss_sum += nn.functional.cross_entropy(logits, y, reduction="sum").double()
                counts += torch.bincount(y * num_classes + logits.argmax(1), minlength=num_classes**2)
    finally:
        model.train(was_training)
    if reduce is not None:
        reduce(loss_sum)
        reduce(counts)
    matrix = counts.view(num_classes, num_classes).cpu()
    n = int(matrix.sum())
    correct = int(matrix.diagonal().sum())
    per_class_total = matrix.sum(1)
    per_class = (matrix.diagonal().double() / per_class_total.clamp_min(1).double()).tolist()
    result: dict[str, Any] = {
        "loss": float(loss_sum) / max(n, 1),
        "error": 1.0 - correct / max(n, 1),
        "accuracy": correct / max(n, 1),
        "per_class_accuracy": [
            round(acc, 6) if total else None
            for acc, total in zip(per_class, per_class_total.tolist(), strict=True)
        ],
        "n": n,
    }
    if confusion:
        result["confusion"] = matrix.tolist()
    return result

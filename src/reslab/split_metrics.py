"""Evaluate a model on a split (held on the device, or streamed): loss, error, per-class accuracy,
confusion matrix."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .data import AnySplit
from .data.eval_transform import EvalTransform
from .data.loaders import Batches, evaluation_batches
from .data.stream import StreamSettings
from .precision import Precision

# Evaluation batches hold at most this many images of 32 x 32 (fewer of larger images: a batch's
# activations, not the data set, set the peak memory of a streamed run).
EVAL_BATCH_SIZE = 500
EVAL_BATCH_PIXELS = EVAL_BATCH_SIZE * 32 * 32


def evaluation_batch_size(image_size: tuple[int, int], train_batch: int = 1) -> int:
    """EVAL_BATCH_SIZE for images up to 32 x 32; for larger ones the batch of EVAL_BATCH_PIXELS, but
    never below the training batch (whose activations, with gradients, already fit)."""
    by_pixels = EVAL_BATCH_PIXELS // (image_size[0] * image_size[1])
    return max(1, min(EVAL_BATCH_SIZE, max(train_batch, by_pixels)))


def evaluate_split(
    model: nn.Module,
    split: AnySplit,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    precision: Precision,
    num_classes: int,
    *,
    batch_size: int = EVAL_BATCH_SIZE,
    confusion: bool = True,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    transform: EvalTransform | None = None,
    device: torch.device | None = None,
    stream: StreamSettings | None = None,
) -> dict[str, Any]:
    """One pass over `split` in eval mode; one host sync at the end. Errors are fractions.
    reduce: sums the loss and the confusion counts in place over processes (each evaluated its shard).
    A streamed split is read with `transform` on `device` (stream: its workers)."""
    batches = evaluation_batches(
        split,
        batch_size,
        mean,
        std,
        transform=transform,
        device=device,
        channels_last=precision.channels_last,
        stream=stream,
    )
    device = device or split.images.device
    return evaluate_batches(
        model, batches, device, precision, num_classes, confusion=confusion, reduce=reduce
    )


def evaluate_batches(
    model: nn.Module,
    batches: Batches,
    device: torch.device,
    precision: Precision,
    num_classes: int,
    *,
    confusion: bool = True,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, Any]:
    """evaluate_split over batches already made (a run keeps its streamed validation workers)."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    counts = torch.zeros(num_classes * num_classes, device=device, dtype=torch.int64)
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
    if getattr(batches, "skipped", None):  # a streamed split's undecodable files, left out of n
        result["skipped"] = list(batches.skipped)
    return result

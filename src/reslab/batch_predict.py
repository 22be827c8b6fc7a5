"""`predict`: top-k classes for image files, folders and @lists of any size, streamed.

Images are decoded by DataLoader workers while the model runs on the previous batch, `batch_size` at a
time, so memory is bounded by a few batches whatever the number of images. Each image gives one row,
in input order: {"path", "top": [{"class", "index", "probability"}, ...], "error": None}. An image that
cannot be read gives a row with an empty "top" and the reason in "error", and the run goes on; with
`strict` the first such image stops it with a ReslabError.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch.utils.data import DataLoader, Dataset

from .classifier import ImageClassifier, load_classifier
from .data.eval_transform import EvalTransform
from .data.inputs import find_images
from .errors import ReslabError

PREDICT_BATCH_SIZE = 64
MAX_AUTO_WORKERS = 4


@dataclass(frozen=True)
class PredictSettings:
    topk: int = 5
    batch_size: int = PREDICT_BATCH_SIZE
    workers: int | None = None  # None: default_workers
    strict: bool = False

    def check(self) -> None:
        for name in ("topk", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ReslabError(f"{name} must be a positive integer, got {value!r}", params=(name,))
        if self.workers is not None and (not isinstance(self.workers, int) or self.workers < 0):
            raise ReslabError(f"workers must be 0 or more, got {self.workers!r}", params=("workers",))


def default_workers(n_images: int, batch_size: int) -> int:
    """No worker process for one batch (starting one costs more than it saves); else one per core
    the model leaves free, at least one and at most MAX_AUTO_WORKERS."""
    if n_images <= batch_size:
        return 0
    return max(1, min(MAX_AUTO_WORKERS, (os.cpu_count() or 1) - 1))


class _Decoded(NamedTuple):
    index: int
    pixels: torch.Tensor | None
    error: str | None


class _ImageFiles(Dataset):
    def __init__(self, paths: Sequence[Path], transform: EvalTransform) -> None:
        self.paths = paths
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> _Decoded:
        try:
            return _Decoded(index, self.transform.read(self.paths[index]), None)
        except ReslabError as exc:
            return _Decoded(index, None, str(exc))


class _Batch(NamedTuple):
    indices: list[int]  # every image of the batch, in order
    pixels: torch.Tensor | None  # the decoded ones, stacked
    decoded: list[int]  # their indices
    errors: dict[int, str]


def _collate(items: list[_Decoded]) -> _Batch:
    good = [item for item in items if item.error is None]
    pixels = torch.stack([item.pixels for item in good]) if good else None  # type: ignore[misc]
    errors = {item.index: item.error for item in items if item.error is not None}
    return _Batch([item.index for item in items], pixels, [item.index for item in good], errors)  # type: ignore[arg-type]


def iter_predictions(
    classifier: ImageClassifier, paths: Sequence[Path], settings: PredictSettings
) -> Iterator[dict[str, Any]]:
    """One row per path, in order (module docstring), computed a batch at a time."""
    settings.check()
    if not paths:
        return
    workers = (
        settings.workers if settings.workers is not None else default_workers(len(paths), settings.batch_size)
    )
    loader = DataLoader(
        _ImageFiles(paths, classifier.transform),
        batch_size=settings.batch_size,
        num_workers=workers,
        collate_fn=_collate,
        pin_memory=classifier.device.type == "cuda",
    )
    classifier.prepare(min(settings.batch_size, len(paths)), workload=len(paths))
    for batch in loader:
        if settings.strict and batch.errors:
            raise ReslabError(batch.errors[min(batch.errors)])
        tops = {}
        if batch.pixels is not None:
            ranked = classifier.top(classifier.probabilities(batch.pixels), settings.topk)
            tops = dict(zip(batch.decoded, ranked, strict=True))
        for index in batch.indices:
            yield {"path": str(paths[index]), "top": tops.get(index, []), "error": batch.errors.get(index)}


def predict(
    checkpoint: str | Path,
    images: Sequence[str | Path],
    topk: int = 5,
    device: str = "auto",
    fast: bool = True,
    precision: str | None = None,
    *,
    weights: str | None = None,
    batch_size: int = PREDICT_BATCH_SIZE,
    workers: int | None = None,
    strict: bool = False,
) -> list[dict[str, Any]]:
    """Top-k classes of image files, folders (recursively) and @list files, read and normalised as the
    model expects (see reslab.classifier.load_classifier for `checkpoint`, `weights` and `precision`).
    Rows as in the module docstring; for results too many to hold, use iter_predictions. fast:
    reslab.infer.optimize_for_inference (compiled only when the image count pays for it)."""
    settings = PredictSettings(topk, batch_size, workers, strict)
    settings.check()
    classifier = load_classifier(checkpoint, weights=weights, device=device, precision=precision, fast=fast)
    return list(iter_predictions(classifier, find_images(images), settings))


def predict_pretrained(
    model_name: str,
    weights: str,
    images: Sequence[str | Path],
    topk: int = 5,
    device: str = "auto",
    fast: bool = True,
    precision: str | None = None,
) -> list[dict[str, Any]]:
    """`predict` with torchvision's pretrained ImageNet weights (model "resnet50", weights "DEFAULT")."""
    return predict(model_name, images, topk, device, fast, precision, weights=weights)

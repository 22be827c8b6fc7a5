"""A data set, split into train/val/test: held in memory (`Split`: uint8 images (N, C, H, W) and int64
labels) or, for image folders too big for that, as files read while training (`FileSplit`)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from ..errors import ReslabError
from .eval_transform import EvalTransform


@dataclass
class Split:
    images: torch.Tensor  # uint8, (N, C, H, W)
    labels: torch.Tensor  # int64, (N,)

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(
                f"images must be uint8 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}"
            )
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError("labels must be one int per image")
        self.labels = self.labels.long()

    def __len__(self) -> int:
        return self.images.shape[0]

    def to(self, device: torch.device | str) -> Split:
        return Split(self.images.to(device), self.labels.to(device))

    def __getitem__(self, part: slice) -> Split:
        return Split(self.images[part], self.labels[part])

    @property
    def in_chans(self) -> int:
        return self.images.shape[1]

    @property
    def image_size(self) -> tuple[int, int]:
        return (self.images.shape[2], self.images.shape[3])


@dataclass
class FileSplit:
    """Image files and their labels, decoded batch by batch (data/stream.py). `paths` is a numpy string
    array, not a list: DataLoader workers read it without touching Python objects' reference counts,
    so their copy-on-write memory stays shared however big the folder is. in_chans and image_size are
    what the model sees."""

    paths: np.ndarray
    labels: torch.Tensor
    in_chans: int
    image_size: tuple[int, int]

    def __post_init__(self) -> None:
        self.paths = np.asarray(self.paths, dtype=str)
        self.labels = torch.as_tensor(self.labels, dtype=torch.long)
        if self.labels.shape != (len(self.paths),):
            raise ValueError("labels must be one int per file")

    def __len__(self) -> int:
        return len(self.paths)

    def to(self, device: torch.device | str) -> FileSplit:
        return self  # files stay where they are; batches go to the device

    def __getitem__(self, part: slice) -> FileSplit:
        return FileSplit(self.paths[part], self.labels[part], self.in_chans, self.image_size)


AnySplit = Split | FileSplit


@dataclass
class DataBundle:
    """Everything training needs to know about a data set.

    mean/std are per channel, in units of [0, 1] pixel values, measured on the training split only.
    allow_flip: horizontal flips preserve the label (clothing, objects) or not (digits).
    pad: pixels of zero padding for the random-crop augmentation (4 for 32x32, as in the paper).
    """

    spec: str
    train: AnySplit
    val: AnySplit
    test: AnySplit
    class_names: list[str]
    allow_flip: bool
    pad: int
    mean: tuple[float, ...] = field(default=())
    std: tuple[float, ...] = field(default=())
    # How val/test (and eval/predict) read an image; None: EvalTransform.fit at image_size.
    eval_transform: EvalTransform | None = None

    def __post_init__(self) -> None:
        if not self.mean or not self.std:
            if isinstance(self.train, FileSplit):
                raise ValueError("a streamed data set needs its mean and std measured (stream.sample_stats)")
            self.mean, self.std = channel_stats(self.train.images)

    @property
    def streamed(self) -> bool:
        return isinstance(self.train, FileSplit)

    @property
    def in_chans(self) -> int:
        return self.train.in_chans

    @property
    def image_size(self) -> tuple[int, int]:
        return self.train.image_size

    @property
    def evaluation(self) -> EvalTransform:
        """How an image file is read for evaluation and prediction."""
        return self.eval_transform or EvalTransform.fit(self.in_chans, self.image_size)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to(self, device: torch.device | str) -> DataBundle:
        """The same data set with its three splits on `device` (statistics and names unchanged)."""
        return replace(self, train=self.train.to(device), val=self.val.to(device), test=self.test.to(device))

    def split(self, name: str) -> Split:
        if name not in ("train", "val", "test"):
            raise ReslabError(f"unknown split {name!r}; choose train, val or test")
        return getattr(self, name)

    def info(self) -> dict[str, Any]:
        """What a checkpoint stores so that eval/predict can prepare inputs exactly as training did."""
        return {
            "spec": self.spec,
            "class_names": list(self.class_names),
            "in_chans": self.in_chans,
            "image_size": list(self.image_size),
            "mean": list(self.mean),
            "std": list(self.std),
            "allow_flip": self.allow_flip,
            "pad": self.pad,
            "sizes": {"train": len(self.train), "val": len(self.val), "test": len(self.test)},
            "mode": "stream" if self.streamed else "memory",
            "eval_transform": self.evaluation.to_dict(),
        }


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images, in [0, 1] units.

    From a 256-bin histogram per channel: exact, and ~10x faster than a float pass over the set.
    """
    values = torch.arange(256, dtype=torch.float64) / 255
    means, stds = [], []
    for c in range(images.shape[1]):
        counts = torch.bincount(images[:, c].reshape(-1), minlength=256).to(torch.float64)
        count = max(float(counts.sum()), 1.0)
        mean = float((counts * values).sum()) / count
        var = float((counts * (values - mean) ** 2).sum()) / count
        means.append(mean)
        stds.append(max(var, 1e-12) ** 0.5)
    return tuple(means), tuple(stds)


def stratified_split(labels: torch.Tensor, fractions: tuple[float, ...], seed: int) -> list[torch.Tensor]:
    """Indices for len(fractions)+1 parts, each class divided in the same proportions (the last part takes
    the rest). Deterministic given the seed."""
    generator = torch.Generator().manual_seed(seed)
    parts: list[list[torch.Tensor]] = [[] for _ in range(len(fractions) + 1)]
    for cls in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == cls).flatten()
        idx = idx[torch.randperm(len(idx), generator=generator)]
        start = 0
        for part, fraction in enumerate(fractions):
            size = round(fraction * len(idx))
            parts[part].append(idx[start : start + size])
            start += size
        parts[-1].append(idx[start:])
    return [torch.sort(torch.cat(p)).values for p in parts]


def hold_out_validation(train: Split, val_fraction: float, seed: int) -> tuple[Split, Split]:
    """Split a training set into train and validation, stratified and seeded."""
    val_idx, train_idx = stratified_split(train.labels, (val_fraction,), seed)
    return Split(train.images[train_idx], train.labels[train_idx]), Split(
        train.images[val_idx], train.labels[val_idx]
    )

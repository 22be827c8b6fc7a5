"""A data set held as tensors (digits, MNIST, CIFAR) brought to another image size or evaluation
transform, the way image files are read (data/eval_transform.py), with torchvision's tensor resize."""

from __future__ import annotations

from dataclasses import replace

import torch
from torchvision.transforms.v2 import functional as F

from .bundle import DataBundle, Split
from .eval_transform import EvalTransform
from .options import DataOptions


def transformed(images: torch.Tensor, transform: EvalTransform) -> torch.Tensor:
    """uint8 (N, C, H, W) -> (N, C, *transform.size): "fit" scales until the images cover the size and
    crops the centre; "resize_crop" resizes the shorter side to resize_size and crops the centre."""
    height, width = images.shape[2:]
    target = transform.size
    if transform.resize_size is not None:
        shorter = transform.resize_size
    else:
        scale = max(target[0] / height, target[1] / width)
        shorter = round(min(height, width) * scale)
    if (height, width) == tuple(target):
        return images
    resized = F.resize(images, [shorter], antialias=True) if min(height, width) != shorter else images
    return F.center_crop(resized, list(target)).contiguous()


def prepared(bundle: DataBundle, options: DataOptions) -> DataBundle:
    """The bundle at options' size, val/test read with options' evaluation transform; the mean and std
    measured again on the resized training images."""
    size = options.size(bundle.image_size)
    evaluation = options.evaluation(bundle.in_chans, size)
    if size == bundle.image_size and evaluation.resize_size is None:
        return bundle
    fit = EvalTransform.fit(bundle.in_chans, size)

    def split(part: Split, transform: EvalTransform) -> Split:
        return Split(transformed(part.images, transform), part.labels)

    return replace(
        bundle,
        train=split(bundle.train, fit),
        val=split(bundle.val, evaluation),
        test=split(bundle.test, evaluation),
        pad=max(1, min(size) // 8) if size != bundle.image_size else bundle.pad,
        mean=(),
        std=(),
        eval_transform=evaluation,
    )

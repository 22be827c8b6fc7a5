"""Batches cut, augmented and normalised on the training device: no per-sample Python, no workers."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from .bundle import Split
from .crops import crop_resize_batch


def normalise(
    images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """uint8 (or float in [0, 255]) (N, C, H, W) -> float, (x / 255 - mean) / std; mean and std shaped
    (1, C, 1, 1). A float input of `dtype` is normalised in place."""
    return images.to(dtype).div_(255).sub_(mean).div_(std)


def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """[lo, hi) of rank's contiguous share of n items, the way torch.tensor_split cuts them."""
    base, extra = divmod(n, world_size)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


def random_crop(
    images: torch.Tensor,
    pad: int,
    generator: torch.Generator | None,
    part: tuple[int, int, int] | None = None,
) -> torch.Tensor:
    """Zero-pad by `pad` and take a random crop of the original size, independently per image.
    part (lo, hi, n): `images` are rows lo..hi of a batch of n; the random numbers are drawn for all n
    (so every rank's generator stays in step with one process's) and rows lo..hi are used."""
    if pad <= 0:
        return images
    n, _, h, w = images.shape
    lo, hi, drawn = part if part is not None else (0, n, n)
    padded = torch.nn.functional.pad(images, (pad, pad, pad, pad))
    device = images.device
    dy = torch.randint(0, 2 * pad + 1, (drawn,), device=device, generator=generator)[lo:hi]
    dx = torch.randint(0, 2 * pad + 1, (drawn,), device=device, generator=generator)[lo:hi]
    rows = (dy[:, None] + torch.arange(h, device=device)).view(n, 1, h, 1)
    cols = (dx[:, None] + torch.arange(w, device=device)).view(n, 1, 1, w)
    batch = torch.arange(n, device=device).view(n, 1, 1, 1)
    channel = torch.arange(images.shape[1], device=device).view(1, -1, 1, 1)
    return padded[batch, channel, rows, cols]


def random_flip(
    images: torch.Tensor, generator: torch.Generator | None, part: tuple[int, int, int] | None = None
) -> torch.Tensor:
    lo, hi, drawn = part if part is not None else (0, images.shape[0], images.shape[0])
    flip = torch.rand(drawn, device=images.device, generator=generator)[lo:hi] < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), images.flip(3), images)


# torchvision.transforms.RandomErasing's defaults (Zhong et al. 2017): the erased area is 2-33% of the
# image, its aspect ratio log-uniform in [0.3, 3.3].
ERASE_SCALE = (0.02, 0.33)
ERASE_RATIO = (0.3, 3.3)


def erase_random_rectangles(
    x: torch.Tensor,
    probability: float,
    generator: torch.Generator | None,
    part: tuple[int, int, int] | None = None,
) -> torch.Tensor:
    """Random erasing on a normalised batch: with `probability`, one rectangle per image is set to 0 (the
    data set's mean colour). Unlike torchvision's retry loop, a rectangle that would overhang the image is
    clipped to it, so the whole batch is drawn in one go. Keeps x's dtype and memory format. `part` as in
    random_crop."""
    if probability <= 0:
        return x
    n, _, h, w = x.shape
    lo, hi, drawn = part if part is not None else (0, n, n)
    device = x.device

    def uniform(low: float, high: float) -> torch.Tensor:
        return torch.rand(drawn, device=device, generator=generator)[lo:hi] * (high - low) + low

    apply = uniform(0.0, 1.0) < probability
    area = uniform(*ERASE_SCALE) * (h * w)
    ratio = torch.exp(uniform(math.log(ERASE_RATIO[0]), math.log(ERASE_RATIO[1])))
    eh = (area * ratio).sqrt().round().clamp(1, h)
    ew = (area / ratio).sqrt().round().clamp(1, w)
    top = (uniform(0.0, 1.0) * (h - eh + 1)).floor()
    left = (uniform(0.0, 1.0) * (w - ew + 1)).floor()
    rows = torch.arange(h, device=device).view(1, h, 1)
    cols = torch.arange(w, device=device).view(1, 1, w)
    inside = (
        (rows >= top.view(-1, 1, 1))
        & (rows < (top + eh).view(-1, 1, 1))
        & (cols >= left.view(-1, 1, 1))
        & (cols < (left + ew).view(-1, 1, 1))
        & apply.view(-1, 1, 1)
    )
    out = x.clone(memory_format=torch.preserve_format)
    return out.masked_fill_(inside.unsqueeze(1), 0.0)


class DeviceBatches:
    """Iterate over a Split that already lives on the device, in (augmented) normalised batches.

    shuffle/augment use `generator` (on the split's device), so a seeded run is repeatable and its
    state can be checkpointed. Labels stay int64 on the device; nothing synchronises with the host.
    augment: the training crop (`crop`: pad-and-crop by `pad`, or a random-resized/scale box resized
    back to the image size, data/crops.py), a horizontal flip where `allow_flip`, and random erasing
    with probability `random_erase` (0 = off).

    rank/world_size (distributed training): `batch_size` stays the GLOBAL batch. Every rank draws the same
    permutation and the same augmentation numbers for each global batch (same seed, same generator) and
    yields only its contiguous slice (torch.tensor_split's cut). The slices of all ranks are disjoint and
    together are exactly the one-process batch, augmented the same way.
    """

    def __init__(
        self,
        split: Split,
        batch_size: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        *,
        shuffle: bool = False,
        augment: bool = False,
        pad: int = 0,
        allow_flip: bool = False,
        random_erase: float = 0.0,
        crop: str = "pad",
        drop_last: bool = False,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        channels_last: bool = False,
        indices: torch.Tensor | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be positive")
        self.split = split
        self.batch_size = batch_size
        device = split.images.device
        self.mean = torch.tensor(mean, device=device, dtype=dtype).view(1, -1, 1, 1)
        self.std = torch.tensor(std, device=device, dtype=dtype).view(1, -1, 1, 1)
        self.shuffle = shuffle
        self.augment = augment
        self.pad = pad
        self.allow_flip = allow_flip
        self.random_erase = random_erase
        self.crop = crop
        self.drop_last = drop_last
        self.generator = generator
        self.dtype = dtype
        self.channels_last = channels_last
        # A subset of the split; None means all of it.
        self.indices = indices
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        self.rank = rank
        self.world_size = world_size

    def __len__(self) -> int:
        n = len(self.split) if self.indices is None else len(self.indices)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        device = self.split.images.device
        order = (
            torch.arange(len(self.split), device=device) if self.indices is None else self.indices.to(device)
        )
        if self.shuffle:
            order = order[torch.randperm(len(order), device=device, generator=self.generator)]
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            if self.drop_last and len(idx) < self.batch_size:
                break
            part = None
            if self.world_size > 1:
                lo, hi = shard_bounds(len(idx), self.rank, self.world_size)
                idx, part = idx[lo:hi], (lo, hi, len(idx))
            images = self.split.images[idx]
            if self.augment:
                if self.crop == "pad":
                    images = random_crop(images, self.pad, self.generator, part)
                else:
                    images = crop_resize_batch(images, self.crop, self.generator, part)
                if self.allow_flip:
                    images = random_flip(images, self.generator, part)
            x = normalise(images, self.mean, self.std, self.dtype)
            if self.augment and self.random_erase > 0:
                x = erase_random_rectangles(x, self.random_erase, self.generator, part)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.split.labels[idx]

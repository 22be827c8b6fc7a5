"""The batches a run iterates: DeviceBatches for a set held in memory, StreamBatches for a streamed folder;
one call site for each use (training, BN statistics, evaluation) whatever the data's mode."""

from __future__ import annotations

import torch

from .batches import DeviceBatches
from .bundle import AnySplit, DataBundle, FileSplit
from .eval_transform import EvalTransform
from .stream import EvaluationRead, StreamBatches, StreamSettings, TrainingRead, sample_images

Batches = DeviceBatches | StreamBatches


def training_batches(
    bundle: DataBundle,
    batch_size: int,
    *,
    generator: torch.Generator,
    crop: str,
    augment: bool = True,
    random_erase: float = 0.0,
    channels_last: bool = False,
    stream: StreamSettings | None = None,
    rank: int = 0,
    world_size: int = 1,
) -> Batches:
    """Shuffled training batches (batch_size is the global batch; each rank gets its slice). augment
    False: the images as evaluation reads them (precise BN statistics)."""
    drop_last = len(bundle.train) >= batch_size
    shared = dict(generator=generator, channels_last=channels_last, rank=rank, world_size=world_size)
    if not isinstance(bundle.train, FileSplit):
        return DeviceBatches(
            bundle.train,
            batch_size,
            bundle.mean,
            bundle.std,
            shuffle=True,
            augment=augment,
            pad=bundle.pad,
            allow_flip=bundle.allow_flip,
            random_erase=random_erase,
            crop=crop,
            drop_last=drop_last,
            **shared,
        )
    if augment:
        read = TrainingRead(bundle.in_chans, bundle.image_size, crop, bundle.pad, bundle.allow_flip)
    else:
        read = EvaluationRead(bundle.evaluation)
    return StreamBatches(
        bundle.train,
        read,
        batch_size,
        bundle.mean,
        bundle.std,
        device=generator.device,
        settings=stream,
        shuffle=True,
        drop_last=drop_last,
        random_erase=random_erase if augment else 0.0,
        **shared,
    )


def evaluation_batches(
    split: AnySplit,
    batch_size: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    *,
    transform: EvalTransform | None = None,
    device: torch.device | None = None,
    channels_last: bool = False,
    stream: StreamSettings | None = None,
) -> Batches:
    """The split in order, unaugmented. A streamed split is read with `transform` (its bundle's
    evaluation transform) on `device`; a split in memory is already on its device."""
    if not isinstance(split, FileSplit):
        return DeviceBatches(split, batch_size, mean, std, channels_last=channels_last)
    if transform is None or device is None:
        raise ValueError("a streamed split needs its evaluation transform and a device")
    read = EvaluationRead(transform)
    return StreamBatches(
        split,
        read,
        batch_size,
        mean,
        std,
        device=device,
        settings=stream,
        channels_last=channels_last,
    )


def split_images(
    split: AnySplit, transform: EvalTransform, count: int | None = None, seed: int = 0
) -> torch.Tensor:
    """uint8 images of a split, for checks and calibration: all of a split held in memory; of a streamed
    one, `count` files (all when None) drawn with `seed` and read with `transform`, undecodable ones left
    out."""
    if not isinstance(split, FileSplit):
        return split.images
    return sample_images(split, transform, count, seed)

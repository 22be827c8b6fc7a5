"""Streaming an image folder: files decoded by DataLoader workers while the model trains.

The same contract as DeviceBatches (normalised batches on the device, the global batch cut into
contiguous per-rank slices), with three choices that make a streamed run repeatable:
- every pass draws one 62-bit seed from the run's data generator (checkpointed, so a resumed run draws the
  same); the order and a seed per sample come from it, so which worker decodes which image, and how many
  workers there are, change nothing;
- each rank takes its contiguous slice of every global batch (disjoint slices that together are the
  epoch, the same order on every rank for the same seed: DistributedSampler's guarantees);
- random erasing draws from a generator seeded by the pass's seed and the rank.

An image that cannot be decoded is returned as an error by the worker (never a worker traceback), left
out of its batch and listed in `skipped`; with strict=True it stops the run with one line instead. A
training slice with no image left is skipped by one process; under DDP every rank must take the same
steps (a missing one would leave the others waiting in all-reduce), so the rank repeats its previous
slice instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..errors import ReslabError
from .batches import erase_random_rectangles, normalise, shard_bounds
from .bundle import FileSplit, channel_stats
from .crops import crop_resize_image, pad_crop_array
from .eval_transform import EvalTransform
from .images import converted, decode, open_image

SEED_BOUND = 2**62


def default_workers(world_size: int = 1) -> int:
    """DataLoader workers per training process: the cores left after one per process (at least 1)."""
    return max(1, min(8, (os.cpu_count() or 2) // world_size - 1))


@dataclass(frozen=True)
class TrainingRead:
    """How a training sample is read: "pad" (fit to the size, pad-crop, flip), or a box crop
    ("random-resized", "scale") resized to the size, then a flip (data/crops.py)."""

    in_chans: int
    size: tuple[int, int]
    crop: str
    pad: int
    allow_flip: bool

    def __call__(self, path: str, seed: int) -> np.ndarray:
        generator = torch.Generator().manual_seed(seed)
        with open_image(path) as image:
            if self.crop == "pad":
                array = decode(image, path, self.in_chans, self.size)
                return pad_crop_array(array, self.pad, generator, self.allow_flip)
            return crop_resize_image(
                converted(image, path, self.in_chans), self.crop, self.size, generator, self.allow_flip
            )


@dataclass(frozen=True)
class EvaluationRead:
    """An evaluation read (EvalTransform) as a sample reader: the seed is not used."""

    transform: EvalTransform

    def __call__(self, path: str, seed: int) -> np.ndarray:
        return self.transform.read(path).numpy()


Sample = tuple[int, np.ndarray | None, str | None]


class ImageFiles(Dataset):
    """Item (index, seed) -> (index, uint8 pixels or None, error line or None)."""

    def __init__(self, paths: np.ndarray, read: Callable[[str, int], np.ndarray]) -> None:
        self.paths = paths
        self.read = read

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: tuple[int, int]) -> Sample:
        index, seed = key
        try:
            return index, self.read(str(self.paths[index]), seed), None
        except ReslabError as error:
            return index, None, str(error)
        except OSError as error:  # a file that vanished or a disk error mid-read
            return index, None, f"cannot read {self.paths[index]}: {error.strerror or error}"


def collate(samples: list[Sample]) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, str]]]:
    """(indices, pixels (n, C, H, W) uint8, [(index, error)]) of the decodable samples."""
    good = [(i, pixels) for i, pixels, _ in samples if pixels is not None]
    errors = [(i, error) for i, pixels, error in samples if pixels is None]
    indices = torch.tensor([i for i, _ in good], dtype=torch.long)
    pixels = torch.from_numpy(np.stack([p for _, p in good])) if good else torch.empty(0, dtype=torch.uint8)
    return indices, pixels, errors


class ShardedBatchSampler(Sampler[list[tuple[int, int]]]):
    """This rank's slice of each global batch, as (index, sample seed) pairs; `pass_seed` (set before
    each pass) decides the order and the seeds."""

    def __init__(
        self, n: int, batch_size: int, shuffle: bool, drop_last: bool, rank: int, world_size: int
    ) -> None:
        self.n, self.batch_size, self.shuffle, self.drop_last = n, batch_size, shuffle, drop_last
        self.rank, self.world_size = rank, world_size
        self.pass_seed = 0

    def __len__(self) -> int:
        return self.n // self.batch_size if self.drop_last else -(-self.n // self.batch_size)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        generator = torch.Generator().manual_seed(self.pass_seed)
        order = torch.randperm(self.n, generator=generator) if self.shuffle else torch.arange(self.n)
        seeds = torch.randint(0, SEED_BOUND, (self.n,), generator=generator)
        for start in range(0, self.n, self.batch_size):
            stop = min(start + self.batch_size, self.n)
            if self.drop_last and stop - start < self.batch_size:
                return
            lo, hi = shard_bounds(stop - start, self.rank, self.world_size)
            rows = slice(start + lo, start + hi)
            yield list(zip(order[rows].tolist(), seeds[rows].tolist(), strict=True))


def _one_thread(_: int) -> None:
    torch.set_num_threads(1)  # a worker decodes; the cores' threads belong to the training step


@dataclass(frozen=True)
class StreamSettings:
    """How a streamed split is read: worker processes, and whether an undecodable image stops the run."""

    workers: int = field(default_factory=default_workers)
    strict: bool = False


class StreamBatches:
    """Normalised batches of a FileSplit on `device`, decoded by DataLoader workers (see the module)."""

    def __init__(
        self,
        split: FileSplit,
        read: Callable[[str, int], np.ndarray],
        batch_size: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        *,
        device: torch.device,
        settings: StreamSettings | None = None,
        shuffle: bool = False,
        drop_last: bool = False,
        generator: torch.Generator | None = None,
        random_erase: float = 0.0,
        dtype: torch.dtype = torch.float32,
        channels_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be positive")
        settings = settings or StreamSettings()
        self.split, self.device, self.settings = split, torch.device(device), settings
        self.mean = torch.tensor(mean, device=device, dtype=dtype).view(1, -1, 1, 1)
        self.std = torch.tensor(std, device=device, dtype=dtype).view(1, -1, 1, 1)
        self.generator, self.random_erase, self.dtype = generator, random_erase, dtype
        self.channels_last, self.rank = channels_last, rank
        self.keep_in_step = world_size > 1 and shuffle  # training under DDP (see the module)
        self.sampler = ShardedBatchSampler(len(split), batch_size, shuffle, drop_last, rank, world_size)
        self.loader = DataLoader(
            ImageFiles(split.paths, read),
            batch_sampler=self.sampler,
            num_workers=settings.workers,
            collate_fn=collate,
            pin_memory=self.device.type == "cuda",
            persistent_workers=settings.workers > 0,
            worker_init_fn=_one_thread if settings.workers > 0 else None,
        )
        self.skipped: list[str] = []  # files of the last pass that could not be decoded

    def __len__(self) -> int:
        return len(self.sampler)

    def _pass_seed(self) -> int:
        if self.generator is None:
            return 0
        device = self.generator.device
        return int(torch.randint(0, SEED_BOUND, (1,), generator=self.generator, device=device))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.sampler.pass_seed = seed = self._pass_seed()
        self.skipped = []
        erase = torch.Generator(device=self.device).manual_seed((seed + self.rank) % SEED_BOUND)
        previous: tuple[torch.Tensor, torch.Tensor] | None = None
        for indices, pixels, errors in self.loader:
            if errors:
                if self.settings.strict:
                    raise ReslabError(f"{errors[0][1]} (drop --strict-data to skip such files)")
                self.skipped += [str(self.split.paths[i]) for i, _ in errors]
            if not len(indices):
                if self.keep_in_step:
                    yield self._in_step(previous, errors)
                continue
            images = pixels.to(self.device, non_blocking=True)
            x = normalise(images, self.mean, self.std, self.dtype)
            if self.random_erase > 0:
                x = erase_random_rectangles(x, self.random_erase, erase)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            previous = x, self.split.labels[indices].to(self.device, non_blocking=True)
            yield previous

    def _in_step(
        self, previous: tuple[torch.Tensor, torch.Tensor] | None, errors: list[tuple[int, str]]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch a DDP rank trains on when none of its slice could be decoded: its previous one."""
        if previous is None:
            detail = f" ({errors[0][1]})" if errors else ""
            raise ReslabError(
                f"process {self.rank}: no image of its first training batch could be decoded{detail}; "
                "the processes would fall out of step: remove or fix the broken files"
            )
        return previous


def sample_images(split: FileSplit, transform: EvalTransform, count: int | None, seed: int) -> torch.Tensor:
    """uint8 images of `count` files (all when None) drawn with `seed`, read with `transform`, in file
    order; undecodable ones are left out (training reports them)."""
    rows = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))[:count].tolist()
    images = []
    for row in sorted(rows):
        try:
            images.append(transform.read(str(split.paths[row])))
        except (ReslabError, OSError):
            continue
    if not images:
        raise ReslabError(f"none of {len(rows)} sampled images of {split.paths[0]}'s split could be decoded")
    return torch.stack(images)


def sample_stats(split: FileSplit, transform: EvalTransform, count: int, seed: int) -> tuple[tuple, tuple]:
    """Per-channel mean and std ([0, 1] units) of `count` training images (sample_images)."""
    return channel_stats(sample_images(split, transform, count, seed))


# Undecodable files named in a warning line (the count covers all of them).
NAMED_SKIPS = 3


def skipped_line(where: str, count: int, names: list[str]) -> str:
    """The one warning line for images of a streamed pass that could not be decoded and were left out."""
    named = ", ".join(names[:NAMED_SKIPS]) + (", ..." if len(names) > NAMED_SKIPS else "")
    return f"warning: {where}: skipped {count} image(s) that could not be decoded ({named}); --strict-data stops instead"

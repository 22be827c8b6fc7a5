"""Precise BatchNorm statistics (`--precise-bn N`): before validation, every BN layer's population mean
and variance are recomputed over N training batches with the weights as they are, as an exact average.

Why: the running averages (momentum 0.1) trail the weights by about ten steps. When an epoch has only
a few steps, the statistics a validation uses come largely from earlier weights, and the eval-mode error
can stay at chance while the training error falls (measured: see docs/training.md). Averaging the batch
statistics of the current weights removes the lag (Wu & Johnson 2021, "Rethinking 'Batch' in BatchNorm").

The batches are the training images without augmentation (what inference sees), in an order drawn from
a generator of their own, so the training stream and a resumed run are unchanged. Under DDP each rank
averages its shard of every batch and the averages are averaged over ranks. BN layers of a frozen part
(--freeze: kept in eval mode) keep their statistics.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..data import DeviceBatches
from ..precision import Precision

# `auto` turns precise BN on when an epoch has fewer steps than this (see docs/training.md for the
# measurement behind it), over up to AUTO_BATCHES batches (at most one pass over the training images).
AUTO_BELOW_STEPS = 10
AUTO_BATCHES = 50


def auto_batches(steps_per_epoch: int) -> int:
    """`--precise-bn auto` resolved for a run: 0 (off) when epochs are long enough for the running
    averages to keep up, else AUTO_BATCHES."""
    return AUTO_BATCHES if steps_per_epoch < AUTO_BELOW_STEPS else 0


def _norm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [
        m
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats and m.training
    ]


@torch.no_grad()
def recompute_bn_statistics(
    model: nn.Module,
    batches: DeviceBatches,
    num_batches: int,
    precision: Precision,
    set_modes: Callable[[nn.Module], None],
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    world_size: int = 1,
) -> int:
    """Replace the running statistics of `model`'s trainable BN layers (those set_modes leaves in train
    mode) by the average over the first `num_batches` of `batches` (one pass at most); returns the
    number of batches used."""
    was_training = model.training
    set_modes(model)
    layers = _norm_layers(model)
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # PyTorch's cumulative average: every batch weighs the same
    used = 0
    try:
        with precision.autocast():
            for x, _ in batches:
                if used >= num_batches:
                    break
                model(x)
                used += 1
    finally:
        for layer, momentum in zip(layers, momenta, strict=True):
            layer.momentum = momentum
        model.train(was_training)
    if reduce is not None and world_size > 1:
        for layer in layers:
            for stat in (layer.running_mean, layer.running_var):
                reduce(stat)
                stat /= world_size
    return used


def statistics_generator(device: torch.device, seed: int, epoch: int) -> torch.Generator:
    """The order of the statistics batches of `epoch`: a generator of their own, so the training
    generator (and with it the training stream and resume) is not touched."""
    return torch.Generator(device=device).manual_seed(seed * 1_000_003 + epoch)

"""Inputs for the round-trip check, and the check itself: the exported file against the PyTorch model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..data import normalise
from ..data.loaders import split_images
from ..evaluate import checkpoint_data
from .formats import Runner


@dataclass
class CheckResult:
    batch_sizes: tuple[int, ...]
    max_abs_diff: float
    max_abs_logit: float  # the scale the difference is judged against
    top1_agreement: float  # fraction of images whose argmax class is the same in both


def input_shape(payload: dict[str, Any], model: nn.Module) -> tuple[int, int, int]:
    """(C, H, W) the checkpoint's model was trained on (native size when the checkpoint does not say)."""
    config = model.config
    data = payload.get("data") or {}
    size = data.get("image_size") or [config.native_input_size] * 2
    return (int(config.in_chans), int(size[0]), int(size[1]))


def sample_batch(payload: dict[str, Any], shape: tuple[int, int, int], n: int) -> tuple[torch.Tensor, str]:
    """n real test images from the checkpoint's data spec, normalised with its mean/std; when that data
    cannot be loaded here, a seeded random normal batch of the same shape, and the reason."""
    data = payload.get("data") or {}
    spec = data.get("spec")
    reason = "the checkpoint names no data set"
    if spec:
        try:
            bundle = checkpoint_data(payload)
            images = split_images(bundle.test, bundle.evaluation, n)
            if tuple(images.shape[1:]) != shape:
                raise ValueError(f"its images are {tuple(images.shape[1:])}, the model expects {shape}")
            images = images[torch.arange(n) % len(images)]
            mean = torch.tensor(data["mean"], dtype=torch.float32).view(1, -1, 1, 1)
            std = torch.tensor(data["std"], dtype=torch.float32).view(1, -1, 1, 1)
            return normalise(
                images, mean, std
            ), f"{spec} test split, normalised with the checkpoint's mean/std"
        except Exception as exc:  # missing directory, other machine's path, changed data: still check
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            reason = f"could not load data {spec!r}: {first}"
    generator = torch.Generator().manual_seed(0)
    return torch.randn((n, *shape), generator=generator), f"random normal batch ({reason})"


@torch.no_grad()
def compare(
    model: nn.Module, runner: Runner, batch: torch.Tensor, batch_sizes: tuple[int, ...]
) -> CheckResult:
    """Run both on the first b images of batch for each b; the worst absolute difference of the logits."""
    worst, scale, agree, total = 0.0, 0.0, 0, 0
    for b in batch_sizes:
        x = batch[:b].contiguous()
        expected = model(x)
        got = runner(x).to(expected.dtype)
        if got.shape != expected.shape:
            raise RuntimeError(f"output shape {tuple(got.shape)} != PyTorch's {tuple(expected.shape)}")
        diff = (got - expected).abs().max().item()
        worst = max(worst, diff if diff == diff else float("inf"))  # NaN must fail, not vanish in max()
        scale = max(scale, expected.abs().max().item())
        agree += int((got.argmax(1) == expected.argmax(1)).sum())
        total += b
    return CheckResult(tuple(batch_sizes), worst, scale, agree / total)

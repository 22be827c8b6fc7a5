"""Training crops: which part of an image a training sample shows.

- "pad": zero-pad by `pad` pixels and take a random crop of the original size (the papers' CIFAR
  augmentation; data/batches.py random_crop).
- "random-resized": torchvision's RandomResizedCrop: a box of 8-100% of the image's area with aspect ratio
  in [3/4, 4/3] (ten tries, then a centre crop), resized to the training size (the `imagenet` recipe).
- "scale": the ResNet paper's scale augmentation (He et al. 2016, sec. 3.4): the shorter side resized to a
  random length in [256, 480], then a random 224 x 224 crop; for another training size S the same
  fractions of the image (a square box of side shorter_side * 224 / U(256, 480)).

A box is (top, left, height, width) in the source image's pixels. The same drawing serves a batch held on
the device (crop_resize_batch, with torchvision's roi_align) and one image decoded in a DataLoader worker
(crop_resize_image, with Pillow), so the two data paths train on the same distribution of crops.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image, ImageOps

from .images import as_array

CROPS = ("pad", "random-resized", "scale")
RRC_SCALE = (0.08, 1.0)
RRC_RATIO = (3 / 4, 4 / 3)
RRC_TRIES = 10
PAPER_SHORT_SIDE = (256.0, 480.0)
PAPER_CROP = 224.0


def _uniform(shape: tuple[int, ...], low: float, high: float, generator, device) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=device, dtype=torch.float64) * (high - low) + low


def random_resized_boxes(n: int, height: int, width: int, generator, device=None) -> torch.Tensor:
    """(n, 4) boxes (top, left, h, w) as RandomResizedCrop draws them, all n at once."""
    area = _uniform((n, RRC_TRIES), *RRC_SCALE, generator, device) * (height * width)
    log_ratio = _uniform((n, RRC_TRIES), math.log(RRC_RATIO[0]), math.log(RRC_RATIO[1]), generator, device)
    ratio = torch.exp(log_ratio)
    w = torch.sqrt(area * ratio).round()
    h = torch.sqrt(area / ratio).round()
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.double().argmax(1, keepdim=True)  # the first try that fits (0 when none does)
    w, h = w.gather(1, first).squeeze(1), h.gather(1, first).squeeze(1)
    top = (_uniform((n,), 0, 1, generator, device) * (height - h + 1)).floor()
    left = (_uniform((n,), 0, 1, generator, device) * (width - w + 1)).floor()
    fallback = _centre_box(height, width, device)
    boxes = torch.stack([top, left, h, w], 1)
    return torch.where(fits.any(1, keepdim=True), boxes, fallback.expand_as(boxes))


def _centre_box(height: int, width: int, device) -> torch.Tensor:
    """RandomResizedCrop's fallback: the whole image, its aspect ratio clamped to the allowed range."""
    ratio = width / height
    if ratio < RRC_RATIO[0]:
        w, h = width, round(width / RRC_RATIO[0])
    elif ratio > RRC_RATIO[1]:
        h, w = height, round(height * RRC_RATIO[1])
    else:
        h, w = height, width
    return torch.tensor([[(height - h) // 2, (width - w) // 2, h, w]], dtype=torch.float64, device=device)


def scale_boxes(n: int, height: int, width: int, generator, device=None) -> torch.Tensor:
    """(n, 4) square boxes of the paper's scale augmentation."""
    side = min(height, width) * PAPER_CROP / _uniform((n,), *PAPER_SHORT_SIDE, generator, device)
    top = _uniform((n,), 0, 1, generator, device) * (height - side)
    left = _uniform((n,), 0, 1, generator, device) * (width - side)
    return torch.stack([top, left, side, side], 1)


def sample_boxes(crop: str, n: int, height: int, width: int, generator, device=None) -> torch.Tensor:
    if crop == "random-resized":
        return random_resized_boxes(n, height, width, generator, device)
    if crop == "scale":
        return scale_boxes(n, height, width, generator, device)
    raise ValueError(f"crop {crop!r} draws no boxes; choose one of {', '.join(CROPS[1:])}")


def crop_resize_batch(
    images: torch.Tensor,
    crop: str,
    generator: torch.Generator | None,
    part: tuple[int, int, int] | None = None,
) -> torch.Tensor:
    """A box per image of a uint8 batch (N, C, H, W), each resized back to H x W (bilinear, averaging
    when it shrinks); float32 in [0, 255]. `part` as in batches.random_crop: boxes are drawn for the
    whole global batch and this rank's rows are used."""
    from torchvision.ops import roi_align

    n, _, height, width = images.shape
    lo, hi, drawn = part if part is not None else (0, n, n)
    boxes = sample_boxes(crop, drawn, height, width, generator, images.device)[lo:hi].float()
    top, left, h, w = boxes.unbind(1)
    index = torch.arange(n, device=images.device, dtype=torch.float32)
    rois = torch.stack([index, left, top, left + w, top + h], 1)
    return roi_align(
        images.float(), rois, (height, width), spatial_scale=1.0, sampling_ratio=-1, aligned=True
    )


def crop_resize_image(
    image: Image.Image, crop: str, size: tuple[int, int], generator: torch.Generator, allow_flip: bool
) -> np.ndarray:
    """One decoded L/RGB image: a box resized to size (H, W) (Pillow, antialiased), flipped half the time
    where allowed; uint8 (C, H, W)."""
    top, left, h, w = sample_boxes(crop, 1, image.height, image.width, generator)[0].tolist()
    box = (left, top, left + w, top + h)
    image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR, box=box, reducing_gap=None)
    if allow_flip and float(torch.rand((), generator=generator)) < 0.5:
        image = ImageOps.mirror(image)
    return as_array(image)


def pad_crop_array(array: np.ndarray, pad: int, generator: torch.Generator, allow_flip: bool) -> np.ndarray:
    """The "pad" crop of one uint8 (C, H, W) array, as batches.random_crop/random_flip do it on a batch."""
    _, height, width = array.shape
    if pad > 0:
        dy, dx = torch.randint(0, 2 * pad + 1, (2,), generator=generator).tolist()
        padded = np.pad(array, ((0, 0), (pad, pad), (pad, pad)))
        array = padded[:, dy : dy + height, dx : dx + width]
    if allow_flip and float(torch.rand((), generator=generator)) < 0.5:
        array = array[:, :, ::-1]
    return np.ascontiguousarray(array)

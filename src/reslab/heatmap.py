"""A Grad-CAM map drawn over its image, as a PNG a person can look at."""

from __future__ import annotations

import io
import math

import numpy as np
import torch
from PIL import Image

# Small inputs (8x8 digits, 32x32 CIFAR) are enlarged to at least this many pixels on their shorter side.
MIN_SIDE = 224


def overlay(pixels: torch.Tensor, cam: torch.Tensor, alpha: float = 0.45) -> Image.Image:
    """The uint8 image (C, H, W) with the map (H, W, values in [0, 1]) blended over it in matplotlib's
    "jet" colours; small images enlarged (nearest pixels, the map smoothly) to MIN_SIDE."""
    from matplotlib import colormaps

    channels, height, width = pixels.shape
    scale = max(1, math.ceil(MIN_SIDE / min(height, width)))
    size = (width * scale, height * scale)
    array = pixels.permute(1, 2, 0).numpy()
    image = Image.fromarray(array[..., 0] if channels == 1 else array)
    image = image.convert("RGB").resize(size, Image.Resampling.NEAREST)
    heat = Image.fromarray(np.uint8(255 * cam.clamp(0, 1).numpy())).resize(size, Image.Resampling.BILINEAR)
    colours = colormaps["jet"](np.asarray(heat, dtype=np.float32) / 255.0)[..., :3]
    blended = (1 - alpha) * np.asarray(image, dtype=np.float32) + alpha * 255.0 * colours
    return Image.fromarray(np.uint8(blended.clip(0, 255).round()))


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()

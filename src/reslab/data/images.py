"""Image files -> uint8 arrays with Pillow: the one decoding path shared by `folder:DIR` and `reslab predict`.

Size rule (both for folders of mixed sizes and for predict): an image whose size differs from the target
is scaled, keeping its aspect ratio, until it covers the target, then centre-cropped to it (Pillow's
ImageOps.fit, bilinear). Nothing is stretched; at most the borders of the longer side are cut.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import ReslabError
from .errtext import quote

# Extensions treated as images when scanning folders; other files (README, .DS_Store, ...) are skipped.
IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".pnm"}
)
GRAY_MODES = frozenset({"1", "L", "LA", "I", "F", "La"})

# Pillow raises these (and a few more) for files it cannot decode; caught in one place only.
_DECODE_ERRORS = (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def open_image(path: Path, source: BinaryIO | None = None) -> Image.Image:
    """Open (lazily: header only) an image file, or `source` (an open binary stream) named `path` in
    messages; an undecodable one is a ReslabError naming it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(path if source is None else source)
    except FileNotFoundError:
        raise ReslabError(f"image {path} does not exist") from None
    except IsADirectoryError:
        raise ReslabError(f"{path} is a directory, not an image file") from None
    except (*_DECODE_ERRORS, Image.DecompressionBombWarning) as e:
        raise ReslabError(
            f"cannot decode image {path}: {quote(e)}; is it an image file Pillow can read?"
        ) from None


def is_gray(image: Image.Image) -> bool:
    """True for single-channel modes and for palette images whose palette holds only greys."""
    if image.mode in GRAY_MODES or image.mode.startswith("I;16"):
        return True
    if image.mode == "P":
        palette = np.asarray(image.getpalette() or [], dtype=np.uint8)
        rgb = palette[: len(palette) // 3 * 3].reshape(-1, 3)
        return bool((rgb == rgb[:, :1]).all())
    return False


def converted(image: Image.Image, path: Path, in_chans: int) -> Image.Image:
    """An opened image decoded, turned upright (EXIF) and converted to L (in_chans 1) or RGB (3):
    16-bit greys keep their top byte, transparent pixels go on white."""
    if in_chans not in (1, 3):
        raise ReslabError(f"images can be read with 1 or 3 channels, not {in_chans}")
    try:
        image.load()
        image = ImageOps.exif_transpose(image)
        if image.mode.startswith("I;16"):
            # Pillow's I;16 -> L conversion clips at 255; keep the top byte instead.
            image = Image.fromarray((np.asarray(image, dtype=np.uint16) >> 8).astype(np.uint8), mode="L")
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            # Transparent pixels go on white, which is what viewers show.
            rgba = image.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            image = Image.alpha_composite(background, rgba)
        return image.convert("L" if in_chans == 1 else "RGB")
    except _DECODE_ERRORS as e:
        raise _damaged(path, e) from None


def _damaged(path: Path, error: BaseException) -> ReslabError:
    return ReslabError(f"cannot decode image {path}: {quote(error)}; the file is damaged or not an image")


def as_array(image: Image.Image) -> np.ndarray:
    """An L or RGB image as uint8 (C, H, W)."""
    array = np.asarray(image, dtype=np.uint8)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def decode(image: Image.Image, path: Path, in_chans: int, size: tuple[int, int]) -> np.ndarray:
    """Decode an opened image to uint8 (C, H, W) with `in_chans` channels (1 or 3) and size (H, W)."""
    image = converted(image, path, in_chans)
    height, width = size
    try:
        if image.size != (width, height):
            image = ImageOps.fit(image, (width, height), method=Image.Resampling.BILINEAR)
        return as_array(image)
    except _DECODE_ERRORS as e:
        raise _damaged(path, e) from None


def _checked_size(image_size: int | tuple[int, int]) -> tuple[int, int]:
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(size) != 2 or min(size) < 1:
        raise ReslabError(f"image_size must be (H, W) with positive sides, got {image_size!r}")
    return int(size[0]), int(size[1])


def read_image(
    path: str | Path, in_chans: int, image_size: int | tuple[int, int], source: BinaryIO | None = None
) -> torch.Tensor:
    """Read one image file (or `source`, a binary stream named `path`) as training prepared it: uint8
    tensor (in_chans, H, W), aspect-preserving resize + centre crop to image_size (an int means square).
    Undecodable file -> ReslabError."""
    path = Path(path)
    size = _checked_size(image_size)
    with open_image(path, source) as image:
        array = decode(image, path, in_chans, size)
    return torch.from_numpy(array.copy())  # decoded arrays can be read-only views of Pillow memory


def read_resized(
    path: str | Path,
    resize_size: int,
    crop_size: int,
    source: BinaryIO | None = None,
    in_chans: int = 3,
) -> torch.Tensor:
    """An image file (or `source`, a binary stream named `path`) as uint8 (in_chans, crop, crop), as
    torchvision's ImageClassification eval transform prepares it: shorter side resized to resize_size
    (bilinear, antialiased), then the centre crop."""
    path = Path(path)
    if resize_size < crop_size:  # torchvision pads; an eval resize is never smaller than its crop
        raise ReslabError(f"resize_size {resize_size} is smaller than crop_size {crop_size}")
    with open_image(path, source) as image:
        width, height = image.size
        if image.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # EXIF orientations that swap the sides
            width, height = height, width
        short, long = min(width, height), max(width, height)
        size_long = int(resize_size * long / short)
        size = (resize_size, size_long) if height <= width else (size_long, resize_size)
        array = decode(image, path, in_chans, size)  # the aspect ratio kept: a resize, no crop
    pixels = torch.from_numpy(array.copy())
    top = int(round((size[0] - crop_size) / 2.0))
    left = int(round((size[1] - crop_size) / 2.0))
    return pixels[:, top : top + crop_size, left : left + crop_size].contiguous()

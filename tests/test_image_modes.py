"""Every image mode a user's folder may hold reads as the same picture: L, LA, RGB, RGBA, P, CMYK, 16-bit
PNG, and a JPEG whose EXIF says it is rotated."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reslab.data import load_data
from reslab.data.images import read_image

# A 6x4 (H x W) picture: a bright top row, the rest dark, so a rotation or a flip would show.
GREY = np.full((6, 4), 40, dtype=np.uint8)
GREY[0] = 220


def _save(kind: str, path: Path) -> Path:
    rgb = np.repeat(GREY[..., None], 3, axis=2)
    if kind == "L":
        Image.fromarray(GREY, mode="L").save(path)
    elif kind == "LA":
        Image.fromarray(np.dstack([GREY, np.full_like(GREY, 255)]), mode="LA").save(path)
    elif kind == "RGB":
        Image.fromarray(rgb, mode="RGB").save(path)
    elif kind == "RGBA":
        Image.fromarray(np.dstack([rgb, np.full_like(GREY, 255)]), mode="RGBA").save(path)
    elif kind == "P":
        Image.fromarray(rgb, mode="RGB").quantize(colors=4).save(path)
    elif kind == "CMYK":
        Image.fromarray(rgb, mode="RGB").convert("CMYK").save(path, quality=100)
    elif kind == "I;16":
        Image.fromarray(GREY.astype(np.uint16) * 257).save(path)  # 16-bit PNG: 220 -> 56540
    elif kind == "EXIF":
        # Stored rotated (4 wide x 6 high becomes 6 wide x 4 high) with orientation 6: "rotate 90 to view".
        stored = Image.fromarray(rgb, mode="RGB").transpose(Image.Transpose.ROTATE_90)
        exif = Image.Exif()
        exif[0x0112] = 6
        stored.save(path, quality=100, exif=exif)
    return path


KINDS = ["L", "LA", "RGB", "RGBA", "P", "CMYK", "I;16", "EXIF"]
SUFFIX = {"CMYK": ".jpg", "EXIF": ".jpg"}


@pytest.mark.parametrize("kind", KINDS)
def test_every_mode_reads_as_the_same_picture(tmp_path, kind):
    path = _save(kind, tmp_path / f"image{SUFFIX.get(kind, '.png')}")
    pixels = read_image(path, 3, (6, 4)).int()
    assert pixels.shape == (3, 6, 4)
    lossy = 12 if kind in SUFFIX else 1  # JPEG's rounding
    assert (pixels[:, 0] - 220).abs().max() <= lossy, (kind, pixels[0])
    assert (pixels[:, 1:] - 40).abs().max() <= lossy, (kind, pixels[0])


def test_a_folder_of_mixed_modes_loads_as_rgb(tmp_path):
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i, kind in enumerate(KINDS):
            _save(kind, tmp_path / cls / f"{i}{SUFFIX.get(kind, '.png')}")
    bundle = load_data(f"folder:{tmp_path}")
    assert bundle.in_chans == 3 and bundle.image_size == (6, 4)
    everything = [bundle.train.images, bundle.val.images, bundle.test.images]
    assert sum(len(images) for images in everything) == 2 * len(KINDS)

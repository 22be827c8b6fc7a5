"""How inference reads one image: the evaluation transform a checkpoint or pretrained weights expect.

Two rules, both ending in uint8 (C, H, W):
- "fit": reslab's training rule (reslab.data.images.read_image): scaled with its aspect ratio kept until it
  covers (H, W), then centre-cropped; 1 or 3 channels.
- "resize_crop": torchvision's eval transform (read_resized): shorter side to resize_size, centre crop.

A transform is a small frozen dataclass, so it travels to DataLoader workers and into HTTP handlers.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .images import read_image, read_resized


@dataclass(frozen=True)
class EvalTransform:
    in_chans: int
    size: tuple[int, int]  # (H, W) of the result
    resize_size: int | None = None  # set: the resize_crop rule; None: fit

    @classmethod
    def fit(cls, in_chans: int, size: tuple[int, int] | list[int]) -> EvalTransform:
        return cls(int(in_chans), (int(size[0]), int(size[1])))

    @classmethod
    def resize_crop(cls, resize_size: int, crop_size: int) -> EvalTransform:
        return cls(3, (int(crop_size), int(crop_size)), int(resize_size))

    def read(self, path: str | Path) -> torch.Tensor:
        """The image file at `path`, transformed; an undecodable one is a ReslabError naming it."""
        return self._read(Path(path), None)

    def read_bytes(self, data: bytes, name: str = "upload") -> torch.Tensor:
        """An encoded image held in memory (an HTTP upload), named `name` in errors."""
        return self._read(Path(name), io.BytesIO(data))

    def _read(self, path: Path, source: io.BytesIO | None) -> torch.Tensor:
        if self.resize_size is None:
            return read_image(path, self.in_chans, self.size, source)
        return read_resized(path, self.resize_size, self.size[0], source)

    def to_dict(self) -> dict[str, Any]:
        rule = "fit" if self.resize_size is None else "resize_crop"
        return {
            "rule": rule,
            "in_chans": self.in_chans,
            "size": list(self.size),
            "resize_size": self.resize_size,
        }

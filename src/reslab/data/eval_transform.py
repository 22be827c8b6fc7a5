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

# The centre crop's share of the resized shorter side in evaluation (224 of 256).
CROP_FRACTION = 0.875


@dataclass(frozen=True)
class EvalTransform:
    in_chans: int
    size: tuple[int, int]  # (H, W) of the result
    resize_size: int | None = None  # set: the resize_crop rule; None: fit

    @classmethod
    def fit(cls, in_chans: int, size: tuple[int, int] | list[int]) -> EvalTransform:
        return cls(int(in_chans), (int(size[0]), int(size[1])))

    @classmethod
    def resize_crop(cls, resize_size: int, crop_size: int, in_chans: int = 3) -> EvalTransform:
        return cls(int(in_chans), (int(crop_size), int(crop_size)), int(resize_size))

    @classmethod
    def centre_crop(cls, in_chans: int, size: int) -> EvalTransform:
        """The evaluation transform of a run trained on random-resized crops of side `size`: the shorter
        side resized to size / 0.875, then the centre size x size (torchvision's reference scripts)."""
        return cls.resize_crop(round(size / CROP_FRACTION), size, in_chans)

    @classmethod
    def of_data_info(cls, info: dict[str, Any]) -> EvalTransform:
        """The transform a checkpoint's data info records (older checkpoints: fit at its image size)."""
        if info.get("eval_transform"):
            return cls.from_dict(info["eval_transform"])
        return cls.fit(info["in_chans"], info["image_size"])

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalTransform:
        """What to_dict wrote (a checkpoint's data info)."""
        if data.get("rule") == "resize_crop":
            return cls.resize_crop(data["resize_size"], data["size"][0], data.get("in_chans", 3))
        return cls.fit(data["in_chans"], data["size"])

    def read(self, path: str | Path) -> torch.Tensor:
        """The image file at `path`, transformed; an undecodable one is a ReslabError naming it."""
        return self._read(Path(path), None)

    def read_bytes(self, data: bytes, name: str = "upload") -> torch.Tensor:
        """An encoded image held in memory (an HTTP upload), named `name` in errors."""
        return self._read(Path(name), io.BytesIO(data))

    def _read(self, path: Path, source: io.BytesIO | None) -> torch.Tensor:
        if self.resize_size is None:
            return read_image(path, self.in_chans, self.size, source)
        return read_resized(path, self.resize_size, self.size[0], source, self.in_chans)

    def to_dict(self) -> dict[str, Any]:
        rule = "fit" if self.resize_size is None else "resize_crop"
        return {
            "rule": rule,
            "in_chans": self.in_chans,
            "size": list(self.size),
            "resize_size": self.resize_size,
        }

"""How a data set is prepared for a run: image size, memory or stream, and the training crop (which
decides the evaluation transform)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ReslabError
from .crops import CROPS
from .eval_transform import EvalTransform

DATA_MODES = ("auto", "memory", "stream")


@dataclass(frozen=True)
class DataOptions:
    """image_size: square side S the model sees (None: the data's own size). mode: folders only; auto
    picks memory or stream by the decoded size (folder.choose_mode). crop: data/crops.py."""

    image_size: int | None = None
    mode: str = "auto"
    crop: str = "pad"

    def __post_init__(self) -> None:
        if self.image_size is not None and (isinstance(self.image_size, bool) or self.image_size < 1):
            raise ReslabError(f"image_size must be a positive number of pixels, got {self.image_size!r}")
        if self.mode not in DATA_MODES:
            raise ReslabError(f"unknown data mode {self.mode!r}; choose one of {', '.join(DATA_MODES)}")
        if self.crop not in CROPS:
            raise ReslabError(f"unknown crop {self.crop!r}; choose one of {', '.join(CROPS)}")

    def size(self, native: tuple[int, int]) -> tuple[int, int]:
        """(H, W) the model sees, given the data's own size; box crops train on squares."""
        if self.image_size is not None:
            return (self.image_size, self.image_size)
        if self.crop != "pad":
            side = min(native)
            return (side, side)
        return native

    def evaluation(self, in_chans: int, size: tuple[int, int]) -> EvalTransform:
        """Whole images for pad-crop training; for box crops (zoomed-in views) torchvision's resize to
        S / 0.875 and centre crop S."""
        if self.crop == "pad":
            return EvalTransform.fit(in_chans, size)
        return EvalTransform.centre_crop(in_chans, size[0])

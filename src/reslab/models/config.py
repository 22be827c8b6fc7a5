"""A ResNet described as data: everything needed to build it, nothing derived."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

IMAGENET_STAGES: dict[int, tuple[str, tuple[int, ...]]] = {
    10: ("basic", (1, 1, 1, 1)),
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
    200: ("bottleneck", (3, 24, 36, 3)),
}


@dataclass(frozen=True)
class ResNetConfig:
    family: str  # "imagenet" (7x7/2 stem + max-pool, 4 stages) or "cifar" (3x3 stem, 3 stages)
    unit: str  # "basic" or "bottleneck"
    layers: tuple[int, ...]  # units per stage
    widths: tuple[int, ...]  # output channels of each stage (a bottleneck's inner width is a quarter)
    stem_width: int
    order: str = "post"  # activation placement, see units.ORDERS; "pre" = full pre-activation
    residual: bool = True  # False: the plain twin, identical units without the addition
    shortcut: str = "B"  # paper option A, B or C
    stride_in_1x1: bool = False  # paper v1 (True) vs torchvision v1.5 (False)
    num_classes: int = 1000
    in_chans: int = 3
    zero_init_residual: bool = False
    name: str = field(default="", compare=False)

    @property
    def depth(self) -> int:
        convs_per_unit = 2 if self.unit == "basic" else 3
        return convs_per_unit * sum(self.layers) + 2

    @property
    def native_input_size(self) -> int:
        return 224 if self.family == "imagenet" else 32

    def to_dict(self) -> dict[str, Any]:
        """JSON-shaped (lists, not tuples), so a config read back from config.json compares equal."""
        data = asdict(self)
        data["layers"], data["widths"] = list(self.layers), list(self.widths)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ResNetConfig:
        data = dict(data)
        for key in ("layers", "widths"):
            data[key] = tuple(data[key])
        return cls(**data)

    def with_overrides(self, **overrides: Any) -> ResNetConfig:
        return replace(self, **overrides)

"""Forecast networks on (lat, lon) grids: Rasp & Thuerey's ResNet, its plain twin, the WeatherBench CNN.

Every convolution pads circularly in longitude (the last axis) and with zeros in latitude, so a field that
wraps around the globe (or a periodic channel) has no seam, and the poles (or walls) see zeros.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ReslabError

MODEL_NAMES = ("resnet", "plain", "cnn")


@dataclass(frozen=True)
class NetConfig:
    """A forecast network. resnet/plain: Rasp & Thuerey (2021), C=128 and K=19 in the paper; cnn:
    WeatherBench's baseline (Rasp et al. 2020), `layers` periodic convolutions with ELU."""

    name: str = "resnet"
    channels: int = 128
    blocks: int = 19
    kernel: int = 3
    first_kernel: int = 7
    dropout: float = 0.0
    bn: str = "after"  # "after": conv -> LeakyReLU -> BN (the paper); "before": conv -> BN -> LeakyReLU
    cnn_channels: int = 64
    cnn_layers: int = 5
    cnn_kernel: int = 5

    def largest_kernel(self) -> int:
        return self.cnn_kernel if self.name == "cnn" else max(self.kernel, self.first_kernel)


class PeriodicConv2d(nn.Conv2d):
    """A 'same' convolution on (lat, lon): circular padding in lon, zeros in lat (odd kernels)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__(in_channels, out_channels, kernel_size, padding=0)
        self.pad = kernel_size // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (self.pad, self.pad, 0, 0), mode="circular")
        x = F.pad(x, (0, 0, self.pad, self.pad))
        return super().forward(x)


def conv_unit(channels: int, kernel: int, bn: str, dropout: float) -> nn.Sequential:
    """conv -> LeakyReLU -> BN (or conv -> BN -> LeakyReLU) [-> dropout]."""
    act, norm = nn.LeakyReLU(), nn.BatchNorm2d(channels)
    layers = [PeriodicConv2d(channels, channels, kernel), *((act, norm) if bn == "after" else (norm, act))]
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class Block(nn.Module):
    """Two conv units; with `residual`, plus the identity (Rasp & Thuerey's residual block)."""

    def __init__(self, channels: int, kernel: int, bn: str, dropout: float, residual: bool) -> None:
        super().__init__()
        self.body = nn.Sequential(*(conv_unit(channels, kernel, bn, dropout) for _ in range(2)))
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return x + out if self.residual else out


class ForecastResNet(nn.Module):
    """A first conv to C channels (LeakyReLU, BN as in the blocks), K blocks, a final 3x3 conv to outputs."""

    def __init__(self, in_channels: int, out_channels: int, config: NetConfig) -> None:
        super().__init__()
        c = config
        first = [
            PeriodicConv2d(in_channels, c.channels, c.first_kernel),
            nn.LeakyReLU(),
            nn.BatchNorm2d(c.channels),
        ]
        self.stem = nn.Sequential(*(first if c.bn == "after" else (first[0], first[2], first[1])))
        residual = c.name == "resnet"
        self.blocks = nn.Sequential(
            *(Block(c.channels, c.kernel, c.bn, c.dropout, residual) for _ in range(c.blocks))
        )
        self.head = PeriodicConv2d(c.channels, out_channels, c.kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


class WeatherBenchCNN(nn.Sequential):
    """Rasp et al. (2020): `layers` periodic convolutions of `cnn_channels`, ELU between, linear output."""

    def __init__(self, in_channels: int, out_channels: int, config: NetConfig) -> None:
        widths = [in_channels] + [config.cnn_channels] * (config.cnn_layers - 1) + [out_channels]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(pairwise(widths)):
            layers.append(PeriodicConv2d(a, b, config.cnn_kernel))
            if i < config.cnn_layers - 1:
                layers.append(nn.ELU())
        super().__init__(*layers)


class Forecaster(nn.Module):
    """A network with its data contract: `history` past states of `variables` in, the state `lead` later out.
    With predict_change the network's output, times `change_scale` (per variable: the training set's std
    of the change over one lead, so the net's target has unit variance, as in GraphCast), is added to the
    latest input state."""

    def __init__(self, net: nn.Module, variables: int, predict_change: bool) -> None:
        super().__init__()
        self.net, self.variables, self.predict_change = net, variables, predict_change
        self.register_buffer("change_scale", torch.ones(variables, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        return x[:, : self.variables] + self.change_scale * out if self.predict_change else out


def build_net(config: NetConfig, in_channels: int, out_channels: int) -> nn.Module:
    if config.name not in MODEL_NAMES:
        raise ReslabError(
            f"unknown forecast model {config.name!r}; choose from {', '.join(MODEL_NAMES)}", params=("model",)
        )
    if config.bn not in ("after", "before"):
        raise ReslabError(f"bn must be 'after' or 'before', not {config.bn!r}", params=("bn",))
    if config.name == "cnn":
        return WeatherBenchCNN(in_channels, out_channels, config)
    return ForecastResNet(in_channels, out_channels, config)


def check_grid(config: NetConfig, grid: tuple[int, int]) -> None:
    """Circular padding needs at least the padding's width of columns; ask for a whole kernel each way."""
    need = config.largest_kernel()
    if min(grid) < need:
        raise ReslabError(
            f"grid {grid[0]}x{grid[1]} is too small for {config.name}: its {need}x{need} kernel needs at least "
            f"{need} points in lat and lon",
            params=("model",),
        )

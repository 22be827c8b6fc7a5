"""One ResNet module for every family: stem, stages of residual units, head."""

from __future__ import annotations

import torch
from torch import nn

from .config import ResNetConfig
from .units import ResidualUnit


class ResNet(nn.Module):
    """ResNet (or its plain twin) built from a ResNetConfig.

    Attribute names follow torchvision (conv1, bn1, layer1..layer4, fc) so torchvision state_dicts load.
    Pre-activation nets have no BN-ReLU in the stem (the first unit's pre-activation serves both its
    paths, as in He et al. 2016b) and end with final_bn + ReLU before pooling.
    """

    def __init__(self, config: ResNetConfig) -> None:
        super().__init__()
        self.config = config
        self.in_chans = config.in_chans
        self.num_classes = config.num_classes
        pre = config.order == "pre"
        imagenet = config.family == "imagenet"

        if imagenet:
            self.conv1 = nn.Conv2d(config.in_chans, config.stem_width, 7, stride=2, padding=3, bias=False)
        else:
            self.conv1 = nn.Conv2d(config.in_chans, config.stem_width, 3, padding=1, bias=False)
        self.bn1 = None if pre else nn.BatchNorm2d(config.stem_width)
        self.relu = nn.ReLU(inplace=False)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1) if imagenet else None

        if len(config.layers) not in (3, 4):
            raise ValueError("a ResNet has 3 (CIFAR) or 4 (ImageNet) stages")
        self.layer4: nn.Sequential | None = None
        in_ch = config.stem_width
        for index, (units, width) in enumerate(zip(config.layers, config.widths, strict=True)):
            first_stride = 1 if index == 0 else 2
            stage = []
            for u in range(units):
                stage.append(
                    ResidualUnit(
                        config.unit,
                        in_ch,
                        width,
                        first_stride if u == 0 else 1,
                        order=config.order,
                        residual=config.residual,
                        shortcut=config.shortcut,
                        stride_in_1x1=config.stride_in_1x1,
                        preact_shortcut=index == 0 and u == 0,
                    )
                )
                in_ch = width
            setattr(self, f"layer{index + 1}", nn.Sequential(*stage))
        self.final_bn = nn.BatchNorm2d(in_ch) if pre else None
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_ch, config.num_classes)
        self.num_features = in_ch
        self._init_weights(config.zero_init_residual)

    def _init_weights(self, zero_init_residual: bool) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for unit in self.units():
                nn.init.zeros_(unit.last_layer().weight)

    def units(self) -> list[ResidualUnit]:
        """Every residual unit, from the input side to the output side."""
        return [m for m in self.modules() if isinstance(m, ResidualUnit)]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_chans:
            raise ValueError(
                "expected a batch of shape (N, "
                + str(self.in_chans)
                + ", H, W), got "
                + str(list(x.shape))
                + "; set in_chans to match the images"
            )
        x = self.conv1(x)
        if self.bn1 is not None:
            x = self.relu(self.bn1(x))
        if self.maxpool is not None:
            x = self.maxpool(x)
        x = self.layer3(self.layer2(self.layer1(x)))
        if self.layer4 is not None:
            x = self.layer4(x)
        if self.final_bn is not None:
            x = self.relu(self.final_bn(x))
        return x

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(x), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

"""One ResNet module for every family: stem, stages of residual units, head."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ReslabError
from .config import ResNetConfig
from .units import ResidualUnit


def check_input_batch(x: torch.Tensor, in_chans: int) -> None:
    """A clear error for input of the wrong shape (TorchScript-compatible: no f-strings)."""
    if x.dim() != 4 or x.shape[1] != in_chans:
        raise ValueError(
            "expected a batch of shape (N, "
            + str(in_chans)
            + ", H, W), got "
            + str(list(x.shape))
            + "; set in_chans to match the images"
        )


class ResNet(nn.Module):
    """ResNet (or its plain twin) built from a ResNetConfig.

    Attribute names follow torchvision (conv1, bn1, layer1..layer4, fc) so torchvision state_dicts load.
    Pre-activation nets have no BN-ReLU in the stem (the first unit's pre-activation serves both its
    paths, as in He et al. 2016b) and end with final_bn + ReLU before pooling.

    Backbone interface (timm's names): forward_features (everything before global pooling, final BN-ReLU
    of pre-activation nets included), forward_head(x, pre_logits) (pool, flatten, fc unless pre_logits),
    num_features (channels of the pooled features), get_classifier / reset_classifier (0 classes: fc is
    nn.Identity and forward returns the pooled features). For stage outputs see reslab.models.features.
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
        self.num_features = in_ch
        self.fc: nn.Module = _classifier(in_ch, config.num_classes)
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

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        """The classifier layer (nn.Linear, or nn.Identity for a net without one)."""
        return self.fc

    @torch.jit.ignore
    def reset_classifier(self, num_classes: int) -> None:
        """A new, freshly initialised classifier for num_classes; 0 removes it (fc = nn.Identity), so the
        model returns its pooled features. The config follows, so checkpoints rebuild the same net."""
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
            raise ReslabError(
                f"num_classes must be a non-negative integer, got {num_classes!r}", params=("num_classes",)
            )
        like = self.conv1.weight
        self.fc = _classifier(self.num_features, num_classes).to(device=like.device, dtype=like.dtype)
        self.num_classes = num_classes
        self.config = self.config.with_overrides(num_classes=num_classes)

    def units(self) -> list[ResidualUnit]:
        """Every residual unit, from the input side to the output side."""
        return [m for m in self.modules() if isinstance(m, ResidualUnit)]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        check_input_batch(x, self.in_chans)
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

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average pool + flatten -> (N, num_features); then the classifier unless pre_logits."""
        x = torch.flatten(self.avgpool(x), 1)
        if pre_logits:
            return x
        return self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _classifier(num_features: int, num_classes: int) -> nn.Module:
    return nn.Linear(num_features, num_classes) if num_classes > 0 else nn.Identity()

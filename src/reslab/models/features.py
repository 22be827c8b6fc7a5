"""Multi-scale features: a ResNet cut into stem + stages that returns the chosen stage outputs (timm's
`features_only`), e.g. for a feature pyramid (torchvision.ops.FeaturePyramidNetwork) or a detector.

Indices follow timm: 0 is the stem output (before the max-pool of ImageNet nets), 1.. are the stages
(layer1..layer4; CIFAR nets have 3 stages, so their indices are 0..3). A stage output is the unit's
output as the next stage receives it. For pre-activation nets that is the raw residual sum, not
normalised: like timm's ResNetV2 (whose feature_info names `stages.N`, not its final `norm`), the last
stage output does NOT go through final_bn + ReLU; forward_features / pooled features do. Their stem
output is conv1's output (timm: `stem.conv`), since pre-activation nets have no stem BN-ReLU.

The wrapper shares the ResNet's modules under the same names (conv1, bn1, layer1, ...), so its
state_dict keys are those of the ResNet without the stages it does not need, final_bn and fc.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from ..errors import ReslabError
from .resnet import ResNet, check_input_batch


class FeatureInfo:
    """Per returned feature: num_chs, reduction (input size / feature size) and module (the attribute
    name in the wrapped ResNet whose output it is). Index it for the dicts, or ask channels()/reduction()."""

    def __init__(self, info: Sequence[dict[str, Any]]) -> None:
        self.info = [dict(entry) for entry in info]

    def _get(self, key: str, idx: int | Sequence[int] | None) -> Any:
        if idx is None:
            return [entry[key] for entry in self.info]
        if isinstance(idx, int):
            return self.info[idx][key]
        return [self.info[i][key] for i in idx]

    def channels(self, idx: int | Sequence[int] | None = None) -> Any:
        return self._get("num_chs", idx)

    def reduction(self, idx: int | Sequence[int] | None = None) -> Any:
        return self._get("reduction", idx)

    def module_name(self, idx: int | Sequence[int] | None = None) -> Any:
        return self._get("module", idx)

    def get_dicts(self) -> list[dict[str, Any]]:
        return [dict(entry) for entry in self.info]

    def __getitem__(self, idx: int) -> dict[str, Any]:
        return self.info[idx]

    def __len__(self) -> int:
        return len(self.info)

    def __iter__(self):  # noqa: ANN204
        return iter(self.info)

    def __repr__(self) -> str:
        return f"FeatureInfo({self.info!r})"


def all_feature_info(model: ResNet) -> list[dict[str, Any]]:
    """num_chs / reduction / module of every index 0..N (stem, then each stage) of a ResNet."""
    pre = model.bn1 is None
    reduction = model.conv1.stride[0]
    info = [
        {"num_chs": model.conv1.out_channels, "reduction": reduction, "module": "conv1" if pre else "relu"}
    ]
    if model.maxpool is not None:
        reduction *= 2
    widths = model.config.widths
    for index in range(len(model.config.layers)):
        if index > 0:
            reduction *= 2
        info.append({"num_chs": widths[index], "reduction": reduction, "module": f"layer{index + 1}"})
    return info


def check_out_indices(out_indices: Iterable[int] | None, num_stages: int) -> tuple[int, ...]:
    """Sorted, distinct indices in 0..num_stages (None: all of them), else one ReslabError."""
    if out_indices is None:
        return tuple(range(num_stages + 1))
    valid = f"0..{num_stages} (0 = stem, 1..{num_stages} = stages)"
    try:
        indices = list(out_indices)
    except TypeError:
        raise ReslabError(
            f"out_indices must be a sequence of ints in {valid}, got {out_indices!r}", params=("out_indices",)
        ) from None
    bad = [i for i in indices if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i <= num_stages]
    if bad or not indices:
        what = f"{', '.join(map(repr, bad))} out of range" if bad else "empty"
        raise ReslabError(
            f"out_indices {what}; this net's valid indices are {valid}", params=("out_indices",)
        )
    return tuple(sorted(set(indices)))


class ResNetFeatures(nn.Module):
    """forward(x) -> list of the stage outputs at out_indices, in index order. Stages past the largest
    index are not kept (nor run)."""

    def __init__(self, model: ResNet, out_indices: Iterable[int] | None = None) -> None:
        super().__init__()
        num_stages = len(model.config.layers)
        self.out_indices = check_out_indices(out_indices, num_stages)
        self._take = list(self.out_indices)  # never empty: TorchScript infers List[int]
        self.config = model.config
        self.in_chans = model.in_chans
        self.conv1 = model.conv1
        self.bn1 = model.bn1
        self.relu = model.relu
        self.maxpool = model.maxpool
        last = max(self.out_indices)
        self.layer1: nn.Module | None = model.layer1 if last >= 1 else None
        self.layer2: nn.Module | None = model.layer2 if last >= 2 else None
        self.layer3: nn.Module | None = model.layer3 if last >= 3 else None
        self.layer4: nn.Module | None = model.layer4 if last >= 4 else None
        every = all_feature_info(model)
        self.feature_info = FeatureInfo([every[i] for i in self.out_indices])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        check_input_batch(x, self.in_chans)
        out: list[torch.Tensor] = []
        x = self.conv1(x)
        if self.bn1 is not None:
            x = self.relu(self.bn1(x))
        if 0 in self._take:
            out.append(x)
        if self.maxpool is not None:
            x = self.maxpool(x)
        if self.layer1 is not None:
            x = self.layer1(x)
            if 1 in self._take:
                out.append(x)
        if self.layer2 is not None:
            x = self.layer2(x)
            if 2 in self._take:
                out.append(x)
        if self.layer3 is not None:
            x = self.layer3(x)
            if 3 in self._take:
                out.append(x)
        if self.layer4 is not None:
            x = self.layer4(x)
            if 4 in self._take:
                out.append(x)
        return out

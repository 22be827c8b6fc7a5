"""Residual units (basic, bottleneck), their activation orders, and the paper's shortcut options A/B/C.

Module names follow torchvision (conv1, bn1, conv2, bn2, conv3, bn3, downsample) so ImageNet
checkpoints load unchanged. In post-activation orders bn_i follows conv_i; in pre-activation orders
bn_i precedes conv_i (it normalises conv_i's input).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Activation placements of Identity Mappings (He et al. 2016b), Fig. 4 / Table 2.
ORDERS = ("post", "bn_after_add", "relu_before_add", "relu_preact", "pre")
SHORTCUTS = ("A", "B", "C")


def conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False)


class ShortcutA(nn.Module):
    """Option A: identity with stride-s subsampling and zero channel padding. No parameters."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        if out_ch < in_ch:
            raise ValueError(f"option A cannot reduce channels ({in_ch} -> {out_ch})")
        self.stride = stride
        self.extra_channels = out_ch - in_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.extra_channels > 0:
            x = F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))
        return x

    def extra_repr(self) -> str:
        return f"stride={self.stride}, extra_channels={self.extra_channels}"


def make_shortcut(option: str, in_ch: int, out_ch: int, stride: int, with_bn: bool) -> nn.Module | None:
    """The shortcut of one unit, or None for a plain identity (no module at all)."""
    shape_changes = stride != 1 or in_ch != out_ch
    if option == "A":
        return ShortcutA(in_ch, out_ch, stride) if shape_changes else None
    if option == "B" and not shape_changes:
        return None
    if option not in SHORTCUTS:
        raise ValueError(f"unknown shortcut option {option!r}; choose one of {', '.join(SHORTCUTS)}")
    layers: list[nn.Module] = [conv1x1(in_ch, out_ch, stride)]
    if with_bn:
        layers.append(nn.BatchNorm2d(out_ch))
    return nn.Sequential(*layers)


class ResidualUnit(nn.Module):
    """One unit H(x) = F(x) + shortcut(x), or its plain twin H(x) = F(x) when residual=False.

    kind: "basic" (two 3x3) or "bottleneck" (1x1, 3x3, 1x1 with out_ch // 4 inner width).
    order: where BN and ReLU sit (ORDERS). stride_in_1x1: paper v1 puts a bottleneck's stride on
    the first 1x1; torchvision v1.5 puts it on the 3x3. preact_shortcut: in pre-activation orders,
    feed the shortcut the pre-activated input (He et al. do this for the first unit after the stem).
    """

    def __init__(
        self,
        kind: str,
        in_ch: int,
        out_ch: int,
        stride: int = 1,
        *,
        order: str = "post",
        residual: bool = True,
        shortcut: str = "B",
        stride_in_1x1: bool = False,
        preact_shortcut: bool = False,
    ) -> None:
        super().__init__()
        if kind not in ("basic", "bottleneck"):
            raise ValueError(f"unknown unit kind {kind!r}; choose basic or bottleneck")
        if order not in ORDERS:
            raise ValueError(f"unknown activation order {order!r}; choose one of {', '.join(ORDERS)}")
        self.kind = kind
        self.order = order
        self.residual = residual
        self.preact_shortcut = preact_shortcut and order == "pre"

        if kind == "basic":
            widths = [in_ch, out_ch, out_ch]
            strides = [stride, 1]
        else:
            inner = out_ch // 4
            widths = [in_ch, inner, inner, out_ch]
            strides = [stride, 1] if stride_in_1x1 else [1, stride]
        pre = order == "pre"  # bn_i normalises conv_i's input only in full pre-activation
        self.conv1 = (conv3x3 if kind == "basic" else conv1x1)(widths[0], widths[1], strides[0])
        self.bn1 = nn.BatchNorm2d(widths[0] if pre else widths[1])
        self.conv2 = conv3x3(widths[1], widths[2], strides[1])
        self.bn2 = nn.BatchNorm2d(widths[1] if pre else widths[2])
        # None (not absent) keeps TorchScript able to prune the bottleneck-only lines of forward.
        self.conv3: nn.Conv2d | None = None
        self.bn3: nn.BatchNorm2d | None = None
        if kind == "bottleneck":
            self.conv3 = conv1x1(widths[2], widths[3])
            self.bn3 = nn.BatchNorm2d(widths[2] if pre else widths[3])
        self.relu = nn.ReLU(inplace=False)
        self.downsample = (
            make_shortcut(shortcut, in_ch, out_ch, stride, with_bn=not pre) if residual else None
        )

    def last_layer(self) -> nn.Module:
        """The last layer of the residual branch: zeroing its weight makes the branch output 0."""
        last_conv, last_bn = (self.conv2, self.bn2) if self.conv3 is None else (self.conv3, self.bn3)
        return last_conv if self.order in ("pre", "bn_after_add") else last_bn

    def residual_branch(self, x: torch.Tensor) -> torch.Tensor:
        """F(x), up to the addition. In "pre" order x is the already pre-activated input relu(bn1(x))."""
        order = self.order
        if order == "pre":
            out = self.conv2(self.relu(self.bn2(self.conv1(x))))
            if self.conv3 is not None and self.bn3 is not None:
                out = self.conv3(self.relu(self.bn3(out)))
            return out
        if order == "relu_preact":
            out = self.bn1(self.conv1(self.relu(x)))
            out = self.bn2(self.conv2(self.relu(out)))
            if self.conv3 is not None and self.bn3 is not None:
                out = self.bn3(self.conv3(self.relu(out)))
            return out
        # Post-activation orders: conv-BN-ReLU, except around the last conv.
        out = self.relu(self.bn1(self.conv1(x)))
        if self.conv3 is not None and self.bn3 is not None:
            out = self.relu(self.bn2(self.conv2(out)))
            out = self.conv3(out)
            if order != "bn_after_add":
                out = self.bn3(out)
        else:
            out = self.conv2(out)
            if order != "bn_after_add":
                out = self.bn2(out)
        if order == "relu_before_add":
            out = self.relu(out)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut_in = x
        if self.order == "pre":
            preact = self.relu(self.bn1(x))
            if self.preact_shortcut:
                shortcut_in = preact
            out = self.residual_branch(preact)
        else:
            out = self.residual_branch(x)
        if self.residual:
            if self.downsample is not None:
                out = out + self.downsample(shortcut_in)
            else:
                out = out + shortcut_in
        if self.order == "bn_after_add":
            if self.conv3 is not None and self.bn3 is not None:
                out = self.bn3(out)
            else:
                out = self.bn2(out)
            out = self.relu(out)
        elif self.order == "post":
            out = self.relu(out)
        return out

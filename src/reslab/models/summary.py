"""Parameter and multiply-accumulate (MAC) counts, per layer and in total.

MACs count convolutions and linear layers only, as the papers' "FLOPs" do. Shapes are traced on the
meta device, so even resnet1202 or resnet152 at 224x224 costs no arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .config import ResNetConfig
from .resnet import ResNet
from .zoo import build_model


@dataclass
class LayerRow:
    name: str
    kind: str
    output_shape: tuple[int, ...]
    params: int
    macs: int


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _layer_macs(module: nn.Module, output: torch.Tensor) -> int:
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return output.numel() * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, nn.Linear):
        return output.numel() * module.in_features
    return 0


def _rows_of(model: ResNet) -> list[tuple[str, nn.Module]]:
    """The summary's granularity: stem layers, one row per residual unit, head layers."""
    rows: list[tuple[str, nn.Module]] = []
    for name, child in model.named_children():
        if child is None:
            continue
        if isinstance(child, nn.Sequential) and name.startswith("layer"):
            rows.extend((f"{name}.{i}", unit) for i, unit in enumerate(child))
        else:
            rows.append((name, child))
    return rows


def profile(model: ResNet, input_size: tuple[int, int] | None = None, batch: int = 1) -> list[LayerRow]:
    """Per-row output shape, params and MACs of one forward pass at input_size (default: native)."""
    config = model.config
    size = input_size or (config.native_input_size, config.native_input_size)
    meta_model = build_model(config) if next(model.parameters()).device.type != "meta" else model
    if meta_model is not model:
        meta_model = meta_model.to("meta")
    macs_by_module: dict[nn.Module, int] = {}
    outputs: dict[nn.Module, tuple[int, ...]] = {}

    def count(module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        macs_by_module[module] = macs_by_module.get(module, 0) + _layer_macs(module, output)

    rows = _rows_of(meta_model)
    row_modules = {m for _, m in rows}

    def record(module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        outputs[module] = tuple(output.shape)

    handles = [
        m.register_forward_hook(count) for m in meta_model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    handles += [m.register_forward_hook(record) for m in row_modules]
    try:
        with torch.no_grad():
            meta_model.eval()
            meta_model(torch.empty(batch, config.in_chans, *size, device="meta"))
    finally:
        for h in handles:
            h.remove()

    result = []
    for name, module in rows:
        macs = sum(macs_by_module.get(m, 0) for m in module.modules())
        if module is meta_model.fc:
            # A headless net (num_classes 0) returns its pooled features.
            shape: tuple[int, ...] = (batch, config.num_classes or meta_model.num_features)
        else:
            shape = outputs.get(module, ())
        result.append(LayerRow(name, type(module).__name__, shape, count_params(module), macs))
    return result


def count_macs(model_or_config: ResNet | ResNetConfig, input_size: tuple[int, int] | None = None) -> int:
    """Multiply-accumulates of one image's forward pass."""
    model = model_or_config if isinstance(model_or_config, ResNet) else _meta_model(model_or_config)
    return sum(row.macs for row in profile(model, input_size))


def _meta_model(config: ResNetConfig) -> ResNet:
    with torch.device("meta"):
        return build_model(config)


def describe(config: ResNetConfig) -> dict[str, object]:
    """One row of `reslab models`: family, depth, unit, shortcut, params, MACs at native size.

    Every unit after the first of a stage is identical, so a copy of the net with at most two units
    per stage is profiled and the second unit's row is counted (n - 1) times: exact, and fast even
    for resnet1202.
    """
    short = config.with_overrides(layers=tuple(min(n, 2) for n in config.layers))
    params = macs = 0
    for row in profile(_meta_model(short)):
        repeats = 1
        if row.name.startswith("layer") and row.name.endswith(".1"):
            repeats = config.layers[int(row.name[len("layer")]) - 1] - 1
        params += repeats * row.params
        macs += repeats * row.macs
    unit = config.unit if config.order == "post" else f"{config.unit}/{config.order}"
    return {
        "name": config.name,
        "family": config.family,
        "depth": config.depth,
        "unit": unit,
        "shortcut": config.shortcut if config.residual else "none (plain)",
        "params": params,
        "macs": macs,
    }

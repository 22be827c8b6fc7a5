"""Fine-tuning controls: which parts are frozen, and the optimiser's parameter groups (a backbone learning
rate scale, no weight decay on norm and bias parameters)."""

from __future__ import annotations

from typing import Any

from torch import nn

from ..run_config import FREEZE_POINTS, TrainConfig

HEAD = "fc."
_STEM = ("conv1.", "bn1.")


def frozen_prefixes(point: str) -> tuple[str, ...]:
    """Parameter-name prefixes that `point` freezes: the stem, the stem and stages up to layerK, or all
    but the classifier ("backbone")."""
    if point == "none":
        return ()
    if point == "backbone":
        return ("",)  # everything; the head is excluded by is_frozen
    depth = FREEZE_POINTS.index(point) - 1  # stem 0, layer1 1, ...
    return _STEM + tuple(f"layer{k}." for k in range(1, depth + 1))


def is_frozen(name: str, point: str) -> bool:
    return not name.startswith(HEAD) and any(name.startswith(p) for p in frozen_prefixes(point))


def freeze(model: nn.Module, point: str) -> list[str]:
    """No gradients for the frozen parameters (so no optimiser state either); returns their names."""
    names = []
    for name, param in model.named_parameters():
        if is_frozen(name, point):
            param.requires_grad_(False)
            names.append(name)
    return names


def set_train_mode(model: nn.Module, point: str) -> None:
    """Training mode, except BatchNorm in the frozen parts, which keeps its statistics (eval mode)."""
    model.train()
    if point == "none":
        return
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and is_frozen(name + ".", point):
            module.eval()


def parameter_groups(model: nn.Module, config: TrainConfig) -> list[dict[str, Any]]:
    """The trainable parameters in up to four groups, the head's first (its lr is the run's lr): head and
    backbone (lr x backbone_lr_scale), each with and without weight decay. Norm-layer parameters and
    biases get none unless config.decay_norm_and_bias (the papers decay every weight). Without either
    control, one group in model.parameters() order: the layout of runs saved before them, which resume."""
    if config.decay_norm_and_bias and config.backbone_lr_scale == 1.0:
        trainable = [p for p in model.parameters() if p.requires_grad]
        return [{"params": trainable, "lr": config.lr, "weight_decay": config.weight_decay}]
    norm_params = {
        id(p)
        for module in model.modules()
        if isinstance(module, nn.modules.batchnorm._NormBase | nn.GroupNorm | nn.LayerNorm)
        for p in module.parameters(recurse=False)
    }
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        no_decay = not config.decay_norm_and_bias and (id(param) in norm_params or name.endswith(".bias"))
        groups.setdefault((not name.startswith(HEAD), no_decay), []).append(param)
    return [
        {
            "params": params,
            "lr": config.lr * (config.backbone_lr_scale if backbone else 1.0),
            "weight_decay": 0.0 if no_decay else config.weight_decay,
        }
        for (backbone, no_decay), params in sorted(groups.items())
    ]

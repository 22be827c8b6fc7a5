"""Gradient flow: how large the loss gradient is at each unit's output and at each conv weight.

The statistic, for one batch: the L2 norm (over the whole batch tensor) of dL/d(unit output) and of
dL/d(conv weight), L being the mean cross-entropy of the batch. Reported values are the mean of those
norms over a few fixed batches, so every model sees exactly the same inputs.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table
from torch import nn

from ..checkpoint import load_checkpoint, model_from_checkpoint
from ..data import DataBundle, DeviceBatches, load_data
from ..errors import ReslabError
from ..models import ResNet, create_model, resolve_config
from ..plots import plot_gradients
from ..stats import columnwise_mean_std, mean_std
from .results import Experiment, Results, checkpoint_key, require_at_least_one

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

DEFAULT_MODELS = ("plain56", "resnet56")


def branch_convs(unit: nn.Module) -> list[nn.Conv2d]:
    """The convolutions of a unit's residual branch, input side first (the shortcut's projection excluded)."""
    shortcut = getattr(unit, "downsample", None)
    skip = {id(m) for m in shortcut.modules()} if isinstance(shortcut, nn.Module) else set()
    return [m for m in unit.modules() if isinstance(m, nn.Conv2d) and id(m) not in skip]


def gradient_norms(
    model: nn.Module,
    units: Sequence[nn.Module],
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    loss_fn: LossFn = F.cross_entropy,
) -> dict[str, list[float]]:
    """Mean over batches of ||dL/d unit_output|| per unit and ||dL/dW|| per branch conv, input side first.

    The model runs in whatever mode it is in (train mode: BN uses batch statistics, as during training);
    callers that care about BN running statistics pass a copy.
    """
    convs = [conv for unit in units for conv in branch_convs(unit)]
    outputs: list[torch.Tensor | None] = [None] * len(units)

    def keep(index: int) -> Callable[..., None]:
        def hook(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
            output.retain_grad()
            outputs[index] = output

        return hook

    handles = [unit.register_forward_hook(keep(i)) for i, unit in enumerate(units)]
    unit_sums = [0.0] * len(units)
    weight_sums = [0.0] * len(convs)
    count = 0
    try:
        for x, y in batches:
            model.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            for i, out in enumerate(outputs):
                if out is None or out.grad is None:
                    raise RuntimeError(f"unit {i} took no part in the forward pass")
                unit_sums[i] += out.grad.double().norm().item()
            for j, conv in enumerate(convs):
                grad = conv.weight.grad
                weight_sums[j] += 0.0 if grad is None else grad.double().norm().item()
            count += 1
    finally:
        for handle in handles:
            handle.remove()
        model.zero_grad(set_to_none=True)
    if count == 0:
        raise ValueError("no batches to measure gradients on")
    return {
        "unit_grad_norm": [s / count for s in unit_sums],
        "weight_grad_norm": [s / count for s in weight_sums],
    }


def first_last_ratio(norms: Sequence[float]) -> float:
    """First-unit norm over last-unit norm: >> 1 grows toward the input, << 1 vanishes toward it."""
    return norms[0] / norms[-1] if norms[-1] > 0 else math.inf


def remove_batchnorm(model: ResNet) -> ResNet:
    """Replace every BatchNorm with Identity, keeping He-initialised convs.

    Without BN a residual unit adds its branch's variance to the shortcut's, so 27 units would multiply
    the signal's variance by ~2^27 and saturate the softmax. To keep the initialisation sane, each
    branch's last conv is scaled by 1/sqrt(#units), which keeps the output variance within a factor e.
    Plain nets keep plain He initialisation, which preserves the signal's scale layer to layer.
    """
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.BatchNorm2d):
                setattr(module, child_name, nn.Identity())
    units = model.units()
    if model.config.residual and units:
        # With zero_init_residual the zeroed BN weight went with the BN: zero the last conv instead.
        scale = 0.0 if model.config.zero_init_residual else 1.0 / math.sqrt(len(units))
        with torch.no_grad():
            for unit in units:
                branch_convs(unit)[-1].weight.mul_(scale)
    return model


def fixed_batches(
    bundle: DataBundle, batch_size: int, num_batches: int, seed: int, device: torch.device | str = "cpu"
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The same shuffled training batches for every model (drawn once, kept in memory)."""
    require_at_least_one("num_batches", num_batches)
    require_at_least_one("batch_size", batch_size)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    split = bundle.train
    batches = DeviceBatches(
        split, batch_size, bundle.mean, bundle.std, shuffle=True, drop_last=True, generator=generator
    )
    taken = [(x.to(device), y.to(device)) for x, y in batches][:num_batches]
    if not taken:
        raise ReslabError(
            f"the training split ({len(split)} images) is smaller than one batch of {batch_size}; "
            "use a smaller batch_size",
            params=("batch_size",),
        )
    return taken


def init_model(
    name: str, bundle: DataBundle, seed: int, *, bn: bool = True, zero_init_residual: bool = False
) -> ResNet:
    """A freshly initialised model for this data, seeded, optionally without BN. Zero-init applies to
    residual nets only: a plain net with zeroed branches computes a constant."""
    if zero_init_residual and not resolve_config(name).residual:
        raise ReslabError(f"{name} is a plain net: zero-initialising its branches would zero its output")
    torch.manual_seed(seed)
    model = create_model(
        name,
        num_classes=bundle.num_classes,
        in_chans=bundle.in_chans,
        zero_init_residual=zero_init_residual,
    )
    return model if bn else remove_batchnorm(model)


def measure_model(model: ResNet, batches: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, Any]:
    """Gradient statistics of one model in train mode, leaving the model itself untouched."""
    probe = copy.deepcopy(model).train()
    norms = gradient_norms(probe, probe.units(), batches)
    return {**norms, "first_last_ratio": first_last_ratio(norms["unit_grad_norm"])}


def _aggregate(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    units_mean, units_std = columnwise_mean_std([r["unit_grad_norm"] for r in per_seed])
    weights_mean, weights_std = columnwise_mean_std([r["weight_grad_norm"] for r in per_seed])
    ratio_mean, ratio_std = mean_std([r["first_last_ratio"] for r in per_seed])
    return {
        "unit_grad_norm": units_mean,
        "weight_grad_norm": weights_mean,
        # The ratio of the mean curves (what the plot shows); per-seed ratios are kept alongside.
        "first_last_ratio": first_last_ratio(units_mean),
        "unit_grad_norm_std": units_std,
        "weight_grad_norm_std": weights_std,
        "first_last_ratio_mean_over_seeds": ratio_mean,
        "first_last_ratio_std_over_seeds": ratio_std,
        "first_last_ratio_per_seed": [r["first_last_ratio"] for r in per_seed],
    }


def gradients_at_init(
    names: Sequence[str],
    bundle: DataBundle,
    *,
    bn_modes: Sequence[bool] = (True, False),
    zero_init: bool = False,
    seeds: int = 1,
    num_batches: int = 4,
    batch_size: int = 128,
) -> dict[str, Any]:
    """Gradient statistics of freshly initialised models, for each BN setting (and zero-init variant of the
    residual ones), mean over `seeds` initialisations, all on the same batches."""
    require_at_least_one("seeds", seeds)
    batches = fixed_batches(bundle, batch_size, num_batches, seed=0)
    models: dict[str, Any] = {}
    for bn in bn_modes:
        for name in names:
            residual = resolve_config(name).residual
            for zero in (False, True) if zero_init and residual else (False,):
                per_seed = [
                    measure_model(init_model(name, bundle, s, bn=bn, zero_init_residual=zero), batches)
                    for s in range(seeds)
                ]
                key = name + ("" if bn else "-nobn") + ("-zeroinit" if zero else "")
                models[key] = {
                    "model": name,
                    "bn": bn,
                    "residual": residual,
                    "zero_init_residual": zero,
                    "source": "init",
                    **_aggregate(per_seed),
                }
    return {"models": models}


def gradients_of_checkpoints(
    paths: Sequence[str | Path], data: str | None, *, num_batches: int = 4, batch_size: int = 128
) -> dict[str, Any]:
    """Gradient statistics of trained models (as trained: with their BN), on the same batches."""
    payloads = [load_checkpoint(p) for p in paths]
    spec = data or payloads[0].get("data", {}).get("spec", "digits")
    bundle = load_data(spec)
    batches = fixed_batches(bundle, batch_size, num_batches, seed=0)
    models: dict[str, Any] = {}
    for payload in payloads:
        model = model_from_checkpoint(payload)
        if model.config.in_chans != bundle.in_chans or model.config.num_classes != bundle.num_classes:
            raise ReslabError(
                f"checkpoint {payload['path']!r} expects {model.config.in_chans}-channel input and "
                f"{model.config.num_classes} classes, but {spec!r} has {bundle.in_chans} and "
                f"{bundle.num_classes}; pass the data it was trained on",
                params=("data",),
            )
        models[checkpoint_key(models, model.config.name or "model", payload["path"])] = {
            "model": model.config.name,
            "bn": True,
            "residual": model.config.residual,
            "zero_init_residual": model.config.zero_init_residual,
            "source": payload["path"],
            **_aggregate([measure_model(model, batches)]),
        }
    return {"models": models}


def print_table(results: dict[str, Any], console: Console) -> None:
    """One row per model: the gradient norm at the first and the last unit, and their ratio."""
    table = Table(title="Loss-gradient norm at the units' outputs (first unit = next to the input)")
    for column in ("model", "BN", "zero-init", "first unit", "last unit", "first/last"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for key, entry in results["models"].items():
        norms = entry["unit_grad_norm"]
        spread = entry.get("first_last_ratio_per_seed", [])
        ratio = f"{entry['first_last_ratio']:.3g}"
        if len(spread) > 1:
            ratio += f" (seeds {entry['first_last_ratio_mean_over_seeds']:.3g} ± {entry['first_last_ratio_std_over_seeds']:.2g})"
        table.add_row(
            key,
            "yes" if entry.get("bn", True) else "no",
            "yes" if entry.get("zero_init_residual") else "no",
            f"{norms[0]:.3g}",
            f"{norms[-1]:.3g}",
            ratio,
        )
    console.print(table)


def run(
    models: Sequence[str] = DEFAULT_MODELS,
    *,
    data: str | None = None,
    at: Sequence[str] = ("init",),
    no_bn: bool = False,
    zero_init_residual: bool = False,
    seeds: int = 1,
    num_batches: int = 4,
    batch_size: int = 128,
) -> Results:
    """The experiment: gradient statistics `at` init (of `models`, on `data` or digits; with and without BN,
    or only without with `no_bn`) or at the checkpoint files `at` names (on `data` or theirs)."""
    checkpoints = [a for a in at if a != "init"]
    if checkpoints and len(checkpoints) != len(at):
        raise ReslabError("at takes either init or checkpoint files, not both", params=("at",))
    if checkpoints:
        if no_bn or zero_init_residual:
            raise ReslabError(
                "no_bn and zero_init_residual change the initialisation; use at init",
                params=("no_bn", "zero_init_residual", "at"),
            )
        results = gradients_of_checkpoints(checkpoints, data, num_batches=num_batches, batch_size=batch_size)
    else:
        results = gradients_at_init(
            models,
            load_data(data or "digits"),
            bn_modes=(False,) if no_bn else (True, False),
            zero_init=zero_init_residual,
            seeds=seeds,
            num_batches=num_batches,
            batch_size=batch_size,
        )
    results["settings"] = {
        "at": "checkpoints" if checkpoints else "init",
        "data": data or ("from checkpoints" if checkpoints else "digits"),
        "seeds": 1 if checkpoints else seeds,
        "batches": num_batches,
        "batch_size": batch_size,
    }
    return results


EXPERIMENT = Experiment(
    name="gradients",
    help="loss-gradient norm at each unit and conv weight, with and without BN",
    results_file="gradients.json",
    entries="models",
    needed_keys=frozenset({"unit_grad_norm", "weight_grad_norm", "first_last_ratio"}),
    table=print_table,
    plot=plot_gradients,
)

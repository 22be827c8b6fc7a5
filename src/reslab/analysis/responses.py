"""Layer responses (He et al. 2016 Fig. 7): the std of each layer's output after BN, before ReLU/addition.

For every BN that follows a conv in the stem and in the units' residual branches (the shortcut's BN
excluded), on the test split with the model in eval mode: the std over images and positions of each
channel, averaged over channels. Per-channel std leaves out the BN shift (beta), which moves a channel's
mean but is no response to the input. The last BN of a unit's branch is the branch output F(x).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from ..checkpoint import load_checkpoint, model_from_checkpoint
from ..data import DataBundle, DeviceBatches, load_data
from ..errors import ReslabError
from ..models import ResNet
from ..plots import plot_responses
from ..stats import columnwise_mean_std
from .results import Experiment, checkpoint_key
from .runs import TrainingSettings, train_or_resume

DEFAULT_MODELS = ("plain20", "plain56", "resnet20", "resnet56")
# Orders in which each BN directly follows its conv, so a BN output is a layer's response.
SUPPORTED_ORDERS = ("post", "relu_before_add", "relu_preact")


def response_layers(model: ResNet) -> list[tuple[str, nn.BatchNorm2d]]:
    """(name, BN) of every conv-following BN, input side first: the stem's, then each unit's branch."""
    if model.config.order not in SUPPORTED_ORDERS:
        raise ReslabError(
            f"responses are defined where BN follows each conv (orders {', '.join(SUPPORTED_ORDERS)}); "
            f"{model.config.name} uses order {model.config.order!r}"
        )
    layers: list[tuple[str, nn.BatchNorm2d]] = []
    if isinstance(model.bn1, nn.BatchNorm2d):
        layers.append(("bn1", model.bn1))
    names = {id(m): n for n, m in model.named_modules()}
    for unit in model.units():
        for attr in ("bn1", "bn2", "bn3"):
            bn = getattr(unit, attr, None)
            if isinstance(bn, nn.BatchNorm2d):
                layers.append((names[id(bn)], bn))
    return layers


@torch.no_grad()
def layer_response_std(model: ResNet, bundle: DataBundle, batch_size: int = 256) -> dict[str, list]:
    """Per layer: mean over channels of each channel's std over the whole test split."""
    layers = response_layers(model)
    sums: list[torch.Tensor | None] = [None] * len(layers)
    squares: list[torch.Tensor | None] = [None] * len(layers)
    counts = [0] * len(layers)

    def accumulate(index: int):  # type: ignore[no-untyped-def]
        def hook(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
            x = output.detach().double().transpose(0, 1).reshape(output.shape[1], -1)
            s, q = x.sum(1), (x * x).sum(1)
            sums[index] = s if sums[index] is None else sums[index] + s
            squares[index] = q if squares[index] is None else squares[index] + q
            counts[index] += x.shape[1]

        return hook

    handles = [bn.register_forward_hook(accumulate(i)) for i, (_, bn) in enumerate(layers)]
    was_training = model.training
    model.eval()
    try:
        for x, _ in DeviceBatches(bundle.test, batch_size, bundle.mean, bundle.std):
            model(x)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    stds = []
    for s, q, n in zip(sums, squares, counts, strict=True):
        assert s is not None and q is not None
        mean = s / n
        var = (q / n - mean * mean).clamp_min(0)
        stds.append(var.sqrt().mean().item())
    return {"layers": [name for name, _ in layers], "std": stds}


def _entry(model: ResNet, per_seed: list[dict[str, list]], sources: list[str]) -> dict[str, Any]:
    mean, spread = columnwise_mean_std([r["std"] for r in per_seed])
    return {
        "model": model.config.name,
        "residual": model.config.residual,
        "layers": per_seed[0]["layers"],
        "std": mean,
        "std_sorted": sorted(mean, reverse=True),
        "std_std": spread,
        "std_per_seed": [r["std"] for r in per_seed],
        "sources": sources,
    }


def from_checkpoints(paths: Sequence[str | Path], data: str | None = None) -> dict[str, Any]:
    """Responses of trained checkpoints (each on its own data's test split unless `data` is given)."""
    models: dict[str, Any] = {}
    for path in paths:
        payload = load_checkpoint(path)
        model = model_from_checkpoint(payload)
        bundle = load_data(data or payload.get("data", {}).get("spec", "digits"))
        key = checkpoint_key(models, model.config.name or Path(path).stem, payload["path"])
        models[key] = _entry(model, [layer_response_std(model, bundle)], [payload["path"]])
    return {"models": models, "settings": {"source": "checkpoints", "data": data or "from checkpoints"}}


def train_and_measure(
    names: Sequence[str],
    settings: TrainingSettings | None = None,
    *,
    out: str | Path = "runs/responses",
    console: Console | None = None,
) -> dict[str, Any]:
    """Train (or reuse) each named model for each seed under out/runs, then measure its best checkpoint."""
    settings = settings or TrainingSettings()
    models: dict[str, Any] = {}
    for name in names:
        per_seed, sources = [], []
        model = None
        for seed in range(settings.seeds):
            run = train_or_resume(
                Path(out) / "runs" / f"{name}-seed{seed}", name, settings, seed=seed, console=console
            )
            payload = load_checkpoint(Path(run["run_dir"]) / "best.pt")
            model = model_from_checkpoint(payload)
            per_seed.append(layer_response_std(model, load_data(settings.data, seed=seed)))
            sources.append(payload["path"])
        assert model is not None
        models[name] = _entry(model, per_seed, sources)
    return {"models": models, "settings": {"source": "trained", **settings.to_dict()}}


def print_table(results: dict[str, Any], console: Console) -> None:
    table = Table(title="Layer responses: std after BN (before ReLU/addition), over the test split")
    for column in ("model", "layers", "mean std", "max std", "last-unit branch std"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for key, entry in results["models"].items():
        std = entry["std"]
        table.add_row(key, str(len(std)), f"{sum(std) / len(std):.3f}", f"{max(std):.3f}", f"{std[-1]:.3f}")
    console.print(table)


EXPERIMENT = Experiment(
    name="responses",
    help="std of each layer's response (paper Fig. 7)",
    results_file="responses.json",
    entries="models",
    needed_keys=frozenset({"std", "std_sorted"}),
    table=print_table,
    plot=plot_responses,
)

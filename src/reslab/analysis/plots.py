"""The experiments' figures, drawn from their results dicts (the JSON files) and nothing else.

Each function returns a matplotlib Figure (no pyplot state), so tests can read back the plotted data;
`save_figure` writes it as PNG at 150 dpi.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image

from ..atomic import atomic_path
from .results import columnwise_mean_std, mean_std

DPI = 150
COLOURS = ("tab:blue", "tab:red", "tab:green", "tab:orange", "tab:purple", "tab:brown", "tab:pink")


def save_figure(fig: Figure, path: str | Path) -> Path:
    """PNG at 150 dpi, reduced to a 256-colour palette: line plots look the same at a third of the size."""
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=DPI, format="png")
    buffer.seek(0)
    with Image.open(buffer) as image, atomic_path(path, suffix=".png") as tmp:
        palette = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
        palette.save(tmp, format="PNG", optimize=True, dpi=(DPI, DPI))
    return Path(path)


def _mean_curve(runs: Sequence[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """Epochs and the per-epoch mean of `key` over the runs (seeds) given, cut to the shortest run."""
    length = min(len(r["curve"]) for r in runs)
    epochs = [int(p["epoch"]) for p in runs[0]["curve"][:length]]
    means, _ = columnwise_mean_std([[p[key] for p in r["curve"][:length]] for r in runs])
    return epochs, means


def plot_degradation(results: dict[str, Any]) -> Figure:
    """He et al. 2016 Fig. 6: plain nets left, ResNets right; thin dashed = training error, bold =
    validation error (percent), one colour per depth; curves are the mean over seeds."""
    runs = results["runs"]
    depths = sorted({r["depth"] for r in runs})
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    for ax, kind, title in zip(axes, ("plain", "residual"), ("plain networks", "ResNets"), strict=True):
        for colour, depth in zip(COLOURS, depths, strict=False):
            group = [r for r in runs if r["kind"] == kind and r["depth"] == depth]
            if not group:
                continue
            label = f"{'plain' if kind == 'plain' else 'ResNet'}-{depth}"
            epochs, train = _mean_curve(group, "train_error")
            _, val = _mean_curve(group, "val_error")
            ax.plot(epochs, [100 * e for e in train], "--", lw=1, color=colour, label=f"{label} train")
            ax.plot(epochs, [100 * e for e in val], "-", lw=2.2, color=colour, label=f"{label} val")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("error (%)")
    seeds = len({r["seed"] for r in runs})
    fig.suptitle(
        f"Degradation on {results.get('settings', {}).get('data', '?')}: training (dashed) and validation "
        f"(bold) error, mean of {seeds} seed{'s' if seeds != 1 else ''}"
    )
    return fig


def plot_gradients(results: dict[str, Any]) -> Figure:
    """Gradient norms per unit (top) and per conv weight (bottom), log scale; one column per BN setting."""
    models = results["models"]
    columns = [bn for bn in (True, False) if any(m.get("bn", True) is bn for m in models.values())]
    fig = Figure(figsize=(5 * len(columns), 7), layout="constrained")
    axes = fig.subplots(2, len(columns), squeeze=False)
    for col, bn in enumerate(columns):
        entries = [(k, m) for k, m in models.items() if m.get("bn", True) is bn]
        for colour, (key, entry) in zip(COLOURS, entries, strict=False):
            style = "--" if entry.get("residual") is False else "-"
            ratio = entry["first_last_ratio"]
            for row, stat in ((0, "unit_grad_norm"), (1, "weight_grad_norm")):
                values = entry[stat]
                xs = list(range(1, len(values) + 1))
                label = f"{key} (first/last {ratio:.3g})" if row == 0 else key
                if not any(values):
                    label += " (all zero)"  # a log axis cannot show it; say so instead of hiding it
                # A log axis masks zeros; joining the rest would draw spikes, so such series get markers only.
                line = "none" if 0 in values else style
                axes[row][col].plot(
                    xs, values, linestyle=line, marker=".", ms=4, color=colour, lw=1.6, label=label
                )
        where = "with BN" if bn else "without BN"
        axes[0][col].set_title(f"‖∂L/∂(unit output)‖, {where}")
        axes[0][col].set_xlabel("unit (1 = next to the input)")
        axes[1][col].set_title(f"‖∂L/∂W‖ of each conv, {where}")
        axes[1][col].set_xlabel("conv layer in the units (1 = next to the input)")
        for row in (0, 1):
            ax = axes[row][col]
            ax.set_yscale("log")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylabel("gradient norm (log)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    at = results.get("settings", {}).get("at", "init")
    fig.suptitle(f"Gradient flow at {at}: the loss gradient at each depth (first unit on the left)")
    return fig


def plot_responses(results: dict[str, Any]) -> Figure:
    """He et al. 2016 Fig. 7: std of each 3x3 layer's response, in layer order (top) and sorted (bottom)."""
    models = results["models"]
    fig = Figure(figsize=(9, 7.5), layout="constrained")
    top, bottom = fig.subplots(2, 1)
    for colour, (key, entry) in zip(COLOURS, models.items(), strict=False):
        style = "--" if entry.get("residual") is False else "-"
        std = entry["std"]
        top.plot(range(1, len(std) + 1), std, style, color=colour, lw=1.6, label=key)
        ranked = entry["std_sorted"]
        bottom.plot(range(1, len(ranked) + 1), ranked, style, color=colour, lw=1.6, label=key)
    top.set_title("in layer order")
    top.set_xlabel("layer index (3x3 conv layers, input side first)")
    bottom.set_title("sorted by magnitude")
    bottom.set_xlabel("layer rank (largest response first)")
    for ax in (top, bottom):
        ax.set_ylabel("std of response")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Layer responses (after BN, before ReLU/addition), mean over seeds")
    return fig


def plot_ablation(results: dict[str, Any]) -> Figure:
    """Identity Mappings Table 2 as a figure: validation curves per placement (left), test error (right)."""
    runs = results["runs"]
    orders: list[str] = []
    for r in runs:
        if r["order"] not in orders:
            orders.append(r["order"])
    labels = {r["order"]: r.get("label", r["order"]) for r in runs}
    fig = Figure(figsize=(12, 4.5), layout="constrained")
    curves, bars = fig.subplots(1, 2)
    means, stds = [], []
    for colour, order in zip(COLOURS, orders, strict=False):
        group = [r for r in runs if r["order"] == order]
        epochs, val = _mean_curve(group, "val_error")
        curves.plot(epochs, [100 * e for e in val], color=colour, lw=1.8, label=labels[order])
        mean, std = mean_std([r["test_error"] for r in group])
        means.append(100 * mean)
        stds.append(100 * std)
    curves.set_title("validation error during training")
    curves.set_xlabel("epoch")
    curves.set_ylabel("validation error (%)")
    curves.grid(alpha=0.3)
    curves.legend(fontsize=8)
    positions = list(range(len(orders)))
    bars.bar(
        positions,
        means,
        yerr=stds,
        capsize=4,
        color=list(COLOURS[: len(orders)]),
        label="test error (mean ± std over seeds)",
    )
    bars.set_xticks(positions, [labels[o] for o in orders], rotation=20, ha="right", fontsize=8)
    bars.set_title("test error")
    bars.set_xlabel("activation placement")
    bars.set_ylabel("test error (%)")
    bars.grid(alpha=0.3, axis="y")
    bars.legend(fontsize=8)
    settings = results.get("settings", {})
    fig.suptitle(
        f"Activation placement (Identity Mappings Table 2): ResNet-{settings.get('depth', '?')} on "
        f"{settings.get('data', '?')}, {len({r['seed'] for r in runs})} seed(s)"
    )
    return fig

"""Every figure reslab draws: a training run's curves and confusion matrix, and the papers' experiments.

Each plot is drawn from plain data (a run's metric rows, a confusion matrix, an experiment's results dict
as its JSON file holds it) onto a matplotlib Figure, never pyplot's global state, so tests can read the
plotted data back. Matplotlib is imported on first use: `import reslab` does not load it.
Files are replaced atomically.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .atomic import atomic_path
from .stats import columnwise_mean_std, mean_std

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 150
COLOURS = ("tab:blue", "tab:red", "tab:green", "tab:orange", "tab:purple", "tab:brown", "tab:pink")


def _figure(**kwargs: Any) -> Figure:
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def save_figure(fig: Figure, path: str | Path) -> Path:
    """PNG at 150 dpi, reduced to a 256-colour palette: line plots look the same at a third of the size."""
    from PIL import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=DPI, format="png")
    buffer.seek(0)
    with Image.open(buffer) as image, atomic_path(path, suffix=".png") as tmp:
        palette = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
        palette.save(tmp, format="PNG", optimize=True, dpi=(DPI, DPI))
    return Path(path)


def _save_as_named(fig: Figure, path: str | Path) -> None:
    """At 100 dpi, in the format the file name's suffix asks for (png, pdf, svg, ...)."""
    path = Path(path)
    with atomic_path(path, suffix=path.suffix) as tmp:  # matplotlib picks the format from the suffix
        fig.savefig(tmp, dpi=100)


# A training run.


def plot_curves(path: Path, rows: list[dict[str, Any]], title: str = "") -> None:
    """Loss and error (train and validation) against epoch, side by side."""
    epochs = [r["epoch"] for r in rows]
    fig = _figure(figsize=(10, 4))
    ax_loss, ax_err = fig.subplots(1, 2)
    for ax, key, label in ((ax_loss, "loss", "loss"), (ax_err, "error", "error (%)")):
        scale = 100.0 if key == "error" else 1.0
        for split, style in (("train", "-"), ("val", "--")):
            ax.plot(epochs, [r[f"{split}_{key}"] * scale for r in rows], style, label=split)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    # Log-like above 1% (where error falls by orders of magnitude) and linear below, so 0% still shows.
    ax_err.set_yscale("symlog", linthresh=1.0)
    ax_err.set_ylim(bottom=0)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    _save_as_named(fig, path)


def plot_confusion(path: Path, confusion: list[list[int]], class_names: list[str], title: str = "") -> None:
    """A confusion matrix (rows: true class, columns: predicted), counts printed in cells when few."""
    import numpy as np

    matrix = np.asarray(confusion)
    k = len(class_names)
    size = min(4 + 0.45 * k, 24)
    fig = _figure(figsize=(size, size))
    ax = fig.subplots()
    ax.imshow(matrix, cmap="Blues")
    if k <= 30:
        ax.set_xticks(range(k), class_names, rotation=90 if k > 10 else 0)
        ax.set_yticks(range(k), class_names)
        threshold = matrix.max() / 2 if matrix.size else 0
        for i in range(k):
            for j in range(k):
                if matrix[i, j]:
                    color = "white" if matrix[i, j] > threshold else "black"
                    ax.text(j, i, str(matrix[i, j]), ha="center", va="center", color=color, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    _save_as_named(fig, path)


# The papers' experiments (reslab.analysis), each from its results dict alone; saved with save_figure.


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
    fig = _figure(figsize=(11, 4.2), layout="constrained")
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
    from matplotlib.ticker import MaxNLocator

    models = results["models"]
    columns = [bn for bn in (True, False) if any(m.get("bn", True) is bn for m in models.values())]
    fig = _figure(figsize=(5 * len(columns), 7), layout="constrained")
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
    fig = _figure(figsize=(9, 7.5), layout="constrained")
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
    fig = _figure(figsize=(12, 4.5), layout="constrained")
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

"""Where BN and ReLU sit in a unit (Identity Mappings, He et al. 2016b, Fig. 4 / Table 2).

The five placements are the zoo's `order` option; every one is trained on the same data, recipe and seeds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ..errors import ReslabError
from ..models import resolve_config
from ..plots import plot_ablation
from .results import Experiment, format_pm
from .runs import TrainingSettings, run_summary, train_or_resume

DEFAULT_DEPTH = 20
PLACEMENTS = (
    ("post", "original"),
    ("bn_after_add", "BN after addition"),
    ("relu_before_add", "ReLU before addition"),
    ("relu_preact", "ReLU-only pre-activation"),
    ("pre", "full pre-activation"),
)
# Identity Mappings Table 2, CIFAR-10 test error (%), ResNet-110 (median of 5 runs).
PAPER_RESNET110 = {
    "post": 6.61,
    "bn_after_add": 8.17,
    "relu_before_add": 7.84,
    "relu_preact": 6.71,
    "pre": 6.37,
}


def run(
    settings: TrainingSettings | None = None,
    *,
    depth: int = DEFAULT_DEPTH,
    out: str | Path = "runs/ablation",
    console: Console | None = None,
) -> dict[str, Any]:
    """Train ResNet-`depth` with each placement for each seed; the results dict of ablation.json."""
    settings = settings or TrainingSettings()
    name = f"resnet{depth}"
    if resolve_config(name).family != "cifar":
        raise ReslabError(
            f"depth {depth}: the ablation uses CIFAR ResNets of depths 6n+2 (20, 32, 56, 110)",
            params=("depth",),
        )
    runs = []
    for order, label in PLACEMENTS:
        for seed in range(settings.seeds):
            run_ = train_or_resume(
                Path(out) / "runs" / f"{name}-{order}-seed{seed}",
                name,
                settings,
                seed=seed,
                model_options={"order": order},
                console=console,
            )
            runs.append(
                {
                    "order": order,
                    "label": label,
                    "depth": depth,
                    "seed": seed,
                    "model": name,
                    **run_summary(run_),
                }
            )
    return {"runs": runs, "settings": {**settings.to_dict(), "depth": depth}}


def print_table(results: dict[str, Any], console: Console) -> None:
    settings = results.get("settings", {})
    table = Table(
        title=f"Activation placement, ResNet-{settings.get('depth', '?')} on {settings.get('data', '?')}: "
        f"mean ± std over {settings.get('seeds', '?')} seed(s)"
    )
    for column in (
        "placement",
        "order",
        "train error",
        "val error",
        "test error",
        "paper (ResNet-110, CIFAR-10)",
    ):
        table.add_column(column, justify="left" if column in ("placement", "order") else "right")
    for order, label in PLACEMENTS:
        rows = [r for r in results["runs"] if r["order"] == order]
        if not rows:
            continue
        table.add_row(
            label,
            order,
            *(format_pm([r[key] for r in rows]) for key in ("train_error", "val_error", "test_error")),
            f"{PAPER_RESNET110[order]:.2f}%",
        )
    console.print(table)


EXPERIMENT = Experiment(
    name="ablation",
    help="the five activation placements of Identity Mappings Table 2",
    results_file="ablation.json",
    entries="runs",
    needed_keys=frozenset({"order", "seed", "train_error", "val_error", "test_error", "curve"}),
    table=print_table,
    plot=plot_ablation,
)

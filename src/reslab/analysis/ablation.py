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
from .degradation import DEFAULT_BATCH_SIZE, DEFAULT_EPOCHS, DEFAULT_LR
from .results import format_pm
from .runs import run_summary, train_or_resume

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
    *,
    depth: int = DEFAULT_DEPTH,
    data: str = "digits",
    seeds: int = 1,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    out: str | Path = "runs/ablation",
    device: str = "auto",
    precision: str = "auto",
    console: Console | None = None,
) -> dict[str, Any]:
    """Train ResNet-`depth` with each placement for each seed; the results dict of results.json."""
    if seeds < 1:
        raise ReslabError(f"--seeds must be at least 1, got {seeds}")
    name = f"resnet{depth}"
    if resolve_config(name).family != "cifar":
        raise ReslabError(f"--depth {depth}: the ablation uses CIFAR ResNets of depth 6n+2 (20, 32, 56, 110)")
    epochs = DEFAULT_EPOCHS if epochs is None else epochs
    batch_size = DEFAULT_BATCH_SIZE if batch_size is None else batch_size
    lr = DEFAULT_LR if lr is None else lr
    runs = []
    for order, label in PLACEMENTS:
        for seed in range(seeds):
            run_ = train_or_resume(
                Path(out) / "runs" / f"{name}-{order}-seed{seed}",
                name,
                data,
                seed=seed,
                epochs=epochs,
                model_options={"order": order},
                batch_size=batch_size,
                lr=lr,
                device=device,
                precision=precision,
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
    return {
        "runs": runs,
        "settings": {
            "data": data,
            "depth": depth,
            "seeds": seeds,
            "epochs": epochs,
            "batch_size": batch_size,
            "lr": lr,
        },
    }


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

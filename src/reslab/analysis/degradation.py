"""The degradation problem (He et al. 2016 Fig. 6): deeper plain nets train worse; deeper ResNets do not.

Every net is trained with the same recipe (reslab's default, SGD + Nesterov with a one-cycle schedule,
at the paper's batch 128 and peak lr 0.1), the same data split and the same seeds; only the depth and
the shortcuts differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ..models import resolve_config
from ..plots import plot_degradation
from ..stats import mean_std
from .results import Experiment, format_pm
from .runs import TrainingSettings, run_summary, train_or_resume

DEFAULT_DEPTHS = (20, 56)
KINDS = ("plain", "residual")


def model_name(kind: str, depth: int) -> str:
    return f"{'plain' if kind == 'plain' else 'resnet'}{depth}"


def run(
    settings: TrainingSettings | None = None,
    *,
    depths: Sequence[int] = DEFAULT_DEPTHS,
    out: str | Path = "runs/degradation",
    console: Console | None = None,
) -> dict[str, Any]:
    """Train plain and residual nets of each depth for each seed; the results dict of results.json."""
    settings = settings or TrainingSettings()
    for depth in depths:
        resolve_config(model_name("plain", depth))  # a bad depth fails before any training
    runs = []
    for depth in depths:
        for kind in KINDS:
            name = model_name(kind, depth)
            for seed in range(settings.seeds):
                run_ = train_or_resume(
                    Path(out) / "runs" / f"{name}-seed{seed}", name, settings, seed=seed, console=console
                )
                runs.append({"kind": kind, "depth": depth, "seed": seed, "model": name, **run_summary(run_)})
    return {
        "runs": runs,
        "settings": {
            **settings.to_dict(),
            "depths": list(depths),
            "recipe": "default (one-cycle, SGD + Nesterov)",
        },
    }


def group(results: dict[str, Any], kind: str, depth: int) -> list[dict[str, Any]]:
    return [r for r in results["runs"] if r["kind"] == kind and r["depth"] == depth]


def verdict(results: dict[str, Any]) -> dict[str, Any] | None:
    """Whether the deepest plain net trains worse than the shallowest and the deepest ResNet does not,
    on the mean final training error; None with fewer than two depths."""
    depths = sorted({r["depth"] for r in results["runs"]})
    if len(depths) < 2:
        return None
    shallow, deep = depths[0], depths[-1]

    def train_error(kind: str, depth: int) -> float:
        return mean_std([r["train_error"] for r in group(results, kind, depth)])[0]

    plain = (train_error("plain", shallow), train_error("plain", deep))
    residual = (train_error("residual", shallow), train_error("residual", deep))
    return {
        "shallow": shallow,
        "deep": deep,
        "plain_degrades": plain[1] > plain[0],
        "residual_degrades": residual[1] > residual[0],
        "plain": plain,
        "residual": residual,
    }


def print_table(results: dict[str, Any], console: Console) -> None:
    seeds = results.get("settings", {}).get("seeds", 1)
    table = Table(
        title=f"Degradation: final errors, mean ± std over {seeds} seed(s) "
        f"({results.get('settings', {}).get('epochs', '?')} epochs)"
    )
    for column in ("model", "layers", "train error", "val error", "test error"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for depth in sorted({r["depth"] for r in results["runs"]}):
        for kind in KINDS:
            rows = group(results, kind, depth)
            if not rows:
                continue
            table.add_row(
                f"{'plain' if kind == 'plain' else 'ResNet'}-{depth}",
                str(depth),
                *(format_pm([r[key] for r in rows]) for key in ("train_error", "val_error", "test_error")),
            )
    console.print(table)
    found = verdict(results)
    if found is not None:
        s, d = found["shallow"], found["deep"]
        plain, res = found["plain"], found["residual"]
        console.print(
            f"plain-{d} vs plain-{s} training error: {100 * plain[1]:.2f}% vs {100 * plain[0]:.2f}% "
            f"({'degradation: the deeper plain net trains worse' if found['plain_degrades'] else 'no degradation'}); "
            f"ResNet-{d} vs ResNet-{s}: {100 * res[1]:.2f}% vs {100 * res[0]:.2f}% "
            f"({'the deeper ResNet trains worse' if found['residual_degrades'] else 'the deeper ResNet trains at least as well'})",
            highlight=False,
        )


EXPERIMENT = Experiment(
    name="degradation",
    help="plain vs residual nets of each depth, same recipe and seeds (paper Fig. 6)",
    results_file="results.json",
    entries="runs",
    needed_keys=frozenset({"kind", "depth", "seed", "train_error", "val_error", "test_error", "curve"}),
    table=print_table,
    plot=plot_degradation,
)

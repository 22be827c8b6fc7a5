"""One training inside an experiment: a normal run directory, skipped when finished, resumed when not."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console

from ..errors import ReslabError

# The runs inside an experiment print nothing of their own; the experiment reports one line per run.
_SILENT = Console(quiet=True)


def _read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _check_same_settings(
    run_dir: Path, model: str, seed: int, epochs: int | None, options: dict, recipe: dict[str, Any]
) -> None:
    """A finished or partial run must be the one asked for; otherwise the experiment would mix settings."""
    config_path = run_dir / "config.json"
    if not config_path.is_file():
        return
    config = json.loads(config_path.read_text())
    wanted = {"model": model, "seed": seed, "model_options": options}
    found = {k: config.get(k) for k in wanted}
    found_epochs = config.get("train", {}).get("epochs")
    wanted.update({k: v for k, v in recipe.items() if v is not None})
    found.update({k: config.get("train", {}).get(k) for k in recipe if recipe[k] is not None})
    if found != wanted or (epochs is not None and found_epochs != epochs):
        raise ReslabError(
            f"{run_dir} holds a run with other settings ({found}, epochs {found_epochs}) than this "
            f"experiment asks for ({wanted}, epochs {epochs}); use another --out or delete that folder"
        )


def train_or_resume(
    run_dir: str | Path,
    model: str,
    data: str,
    *,
    seed: int,
    epochs: int | None,
    model_options: dict[str, Any] | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    device: str = "auto",
    precision: str = "auto",
    console: Console | None = None,
) -> dict[str, Any]:
    """Train `model` into run_dir, or reuse it: test.json present = finished (read back), last.pt present
    = interrupted (resumed with reslab.train(resume=...)). Returns {run_dir, metrics, test, config}."""
    from ..train.api import train  # imported late: the training engine is heavy and not needed for --replot

    run_dir = Path(run_dir)
    options = dict(model_options or {})
    _check_same_settings(run_dir, model, seed, epochs, options, {"batch_size": batch_size, "lr": lr})
    if (run_dir / "test.json").is_file() and (run_dir / "best.pt").is_file():
        if console is not None:
            console.print(f"  {run_dir}: finished earlier, reusing it", highlight=False)
    elif (run_dir / "last.pt").is_file():
        if console is not None:
            console.print(f"  {run_dir}: interrupted earlier, resuming it", highlight=False)
        train(resume=run_dir, quiet=True, console=_SILENT)
    else:
        if console is not None:
            console.print(f"  training {model} (seed {seed}) -> {run_dir}", highlight=False)
        train(
            model,
            data,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            seed=seed,
            out=run_dir,
            device=device,
            precision=precision,
            model_options=options or None,
            quiet=True,
            console=_SILENT,
        )
    metrics = _read_metrics(run_dir)
    if not metrics or not (run_dir / "test.json").is_file():
        raise ReslabError(f"{run_dir} did not finish (no metrics or test.json); delete it and run again")
    return {
        "run_dir": str(run_dir),
        "metrics": metrics,
        "test": json.loads((run_dir / "test.json").read_text()),
        "config": json.loads((run_dir / "config.json").read_text()),
    }


def run_summary(run: dict[str, Any]) -> dict[str, Any]:
    """The per-run numbers every experiment reports: final train/val error, test error, the curve."""
    last = run["metrics"][-1]
    return {
        "train_error": last["train_error"],
        "val_error": last["val_error"],
        "test_error": run["test"]["error"],
        "curve": [
            {"epoch": m["epoch"], "train_error": m["train_error"], "val_error": m["val_error"]}
            for m in run["metrics"]
        ],
        "run_dir": run["run_dir"],
    }

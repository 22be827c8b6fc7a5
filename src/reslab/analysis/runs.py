"""The trainings inside an experiment: one set of settings for all of them, and each a normal run directory,
skipped when finished, resumed when not."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from ..errors import ReslabError
from ..precision import resolve_device, resolve_precision
from ..run_config import RunConfig, check_setting
from ..training.run_dir import read_metrics
from .results import read_json, require_at_least_one

# Chosen by measurement on digits (README, "The papers' experiments"): long enough for ResNet-56 to
# reach ResNet-20's training error on every seed tried, short enough that plain-56 has not yet caught
# up with plain-20, and the four degradation runs fit in well under 10 minutes on 2 cores.
DEFAULT_EPOCHS = 30
# The paper's CIFAR batch and learning rate (reslab's default recipe uses 64 and 0.1, at which ResNet-56
# on digits spikes at the peak of the one-cycle schedule and ends behind ResNet-20).
DEFAULT_BATCH_SIZE = 128
DEFAULT_LR = 0.1

# The runs inside an experiment print nothing of their own; the experiment reports one line per run.
_SILENT = Console(quiet=True)


@dataclass(frozen=True)
class TrainingSettings:
    """What every training inside one experiment shares: the data, the seeds 0..seeds-1 and the recipe."""

    data: str = "digits"
    seeds: int = 1
    epochs: int = DEFAULT_EPOCHS
    batch_size: int = DEFAULT_BATCH_SIZE
    lr: float = DEFAULT_LR
    device: str = "auto"
    precision: str = "auto"

    def __post_init__(self) -> None:
        require_at_least_one("seeds", self.seeds)
        # The training settings get the same one-line checks as `reslab train` (all of them, lr included).
        for name in ("epochs", "batch_size", "lr"):
            check_setting(name, getattr(self, name))

    def to_dict(self) -> dict[str, Any]:
        """The settings as the results files record them (the device is where they ran, not a setting)."""
        return {key: value for key, value in asdict(self).items() if key != "device"}


def _read_json(path: Path) -> Any:
    return read_json(path, advice=f"delete {path.parent} and run again")


def _check_same_settings(
    run_dir: Path, model: str, seed: int, options: dict[str, Any], settings: TrainingSettings
) -> None:
    """A finished or partial run must be the one asked for; otherwise the experiment would mix settings.
    The run lies in the experiment's folder (its `out`), which the message points to."""
    config_path = run_dir / "config.json"
    if not config_path.is_file():
        return
    try:
        config = RunConfig.from_dict(_read_json(config_path))
    except (KeyError, TypeError, ValueError) as exc:
        raise ReslabError(
            f"cannot read {str(config_path)!r} ({exc}); delete {run_dir} and run again"
        ) from None
    found = {
        "model": config.model.name,
        "data": config.data.spec,
        "seed": config.seed,
        "model_options": config.model.options,
        "precision": config.precision.precision,
        "epochs": config.train.epochs,
        "batch_size": config.train.batch_size,
        "lr": config.train.lr,
    }
    wanted = {
        "model": model,
        "data": settings.data,
        "seed": seed,
        "model_options": options,
        # What "auto" means on this machine: the run would be trained at that precision.
        "precision": resolve_precision(settings.precision, resolve_device(settings.device)).name,
        "epochs": settings.epochs,
        "batch_size": settings.batch_size,
        "lr": settings.lr,
    }
    differ = [key for key in wanted if found[key] != wanted[key]]
    if differ:
        had = ", ".join(f"{key} {found[key]!r}" for key in differ)
        asked = ", ".join(f"{key} {wanted[key]!r}" for key in differ)
        raise ReslabError(
            f"{run_dir} holds a run with other settings ({had}) than this experiment asks for ({asked}); "
            "use another out or delete that folder",
            params=("out",),
        )


def train_or_resume(
    run_dir: str | Path,
    model: str,
    settings: TrainingSettings,
    *,
    seed: int,
    model_options: dict[str, Any] | None = None,
    console: Console | None = None,
) -> dict[str, Any]:
    """Train `model` into run_dir, or reuse it: test.json present = finished (read back), last.pt present
    = interrupted (resumed with reslab.train(resume=...)). Returns {run_dir, metrics, test, config}."""
    from ..training.api import (
        train,  # imported late: the training engine is heavy and not needed to replot
    )

    run_dir = Path(run_dir)
    options = dict(model_options or {})
    _check_same_settings(run_dir, model, seed, options, settings)
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
            settings.data,
            epochs=settings.epochs,
            batch_size=settings.batch_size,
            lr=settings.lr,
            seed=seed,
            out=run_dir,
            device=settings.device,
            precision=settings.precision,
            model_options=options or None,
            quiet=True,
            console=_SILENT,
        )
    metrics = read_metrics(run_dir)
    if not metrics or not (run_dir / "test.json").is_file():
        raise ReslabError(f"{run_dir} did not finish (no metrics or test.json); delete it and run again")
    return {
        "run_dir": str(run_dir),
        "metrics": metrics,
        "test": _read_json(run_dir / "test.json"),
        "config": _read_json(run_dir / "config.json"),
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

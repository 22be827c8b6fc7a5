"""Training a forecast network: direct (one lead per model) or iterative (one time step, rolled out).

As Rasp & Thuerey (2021): latitude-weighted MAE (or MSE), Adam with L2 1e-5, learning rate cut on a
validation plateau, early stopping on validation. A run directory holds config.json, metrics.csv,
last.pt (everything needed to resume) and best.pt (the weights with the lowest validation loss).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console

from ..atomic import atomic_write, atomic_write_text, write_json
from ..errors import DivergedError, ReslabError
from ..training.run_dir import metrics_csv
from .data import DataConfig, GriddedData, Samples, load_data
from .metrics import weighted_loss
from .models import Forecaster, NetConfig, build_net, check_grid


@dataclass(frozen=True)
class TrainConfig:
    data: DataConfig
    net: NetConfig = field(default_factory=NetConfig)
    lead_hours: float = 24.0  # direct mode; iterative (rollout) mode learns the data's time step
    rollout: bool = False
    unroll: int = 1  # rollout mode: the loss averages this many autoregressive steps (backprop through all)
    predict_change: bool = True  # the net outputs the change from the latest state (False: the state)
    loss: str = "mae"
    lr: float = 1e-3
    weight_decay: float = 1e-5
    batch_size: int = 32
    epochs: int = 50
    samples_per_epoch: int = 0  # 0: the whole training split each epoch
    val_samples: int = 1000  # at most this many validation samples, evenly strided
    plateau_patience: int = 2
    plateau_factor: float = 0.2
    stop_patience: int = 4
    max_minutes: float = 0.0  # 0: no limit; else stop after the epoch that passes it
    seed: int = 0
    label: str = ""  # the model's name in scores; default: the net's name

    @property
    def name(self) -> str:
        return self.label or self.net.name

    @staticmethod
    def from_dict(d: dict[str, Any]) -> TrainConfig:
        data = {k: tuple(v) if isinstance(v, list) else v for k, v in d["data"].items()}
        return TrainConfig(**{**d, "data": DataConfig(**data), "net": NetConfig(**d["net"])})


def step_count(config: TrainConfig, data: GriddedData) -> int:
    """The network's lead in data time steps."""
    return 1 if config.rollout else data.steps(config.lead_hours)


def build_forecaster(config: TrainConfig, data: GriddedData) -> Forecaster:
    check_grid(config.net, data.grid)
    channels = len(data.names)
    net = build_net(config.net, channels * config.data.history, channels)
    return Forecaster(net, channels, config.predict_change)


def check_settings(config: TrainConfig, out: Path, resume: bool) -> None:
    if config.loss not in ("mae", "mse"):
        raise ReslabError(f"loss must be mae or mse, not {config.loss!r}", params=("loss",))
    if config.unroll < 1 or (config.unroll > 1 and not config.rollout):
        raise ReslabError("unroll must be 1, or more with rollout", params=("unroll", "rollout"))
    if (out / "last.pt").exists() and not resume:
        raise ReslabError(f"{str(out)!r} already holds a run; resume continues it", params=("resume",))


def prepare(config: TrainConfig) -> tuple[GriddedData, Forecaster, Samples, Samples, int]:
    """The data, the model (its change scale set), training and validation samples, and the model's
    lead in data steps."""
    data = load_data(config.data)
    step = step_count(config, data)
    lead, history = step * config.unroll, config.data.history
    torch.manual_seed(config.seed)
    model = build_forecaster(config, data)
    model.change_scale.copy_(change_std(Samples(data.normalised("train"), history, step)))
    train, val = (Samples(data.normalised(s), history, lead) for s in ("train", "val"))
    if len(train) == 0 or len(val) == 0:
        raise ReslabError(
            f"the data is too short for history {history} and a {lead}-step lead", params=("lead_hours",)
        )
    val = Samples(
        data.normalised("val"), history, lead, every=max(1, math.ceil(len(val) / config.val_samples))
    )
    return data, model, train, val, step


def train_forecaster(
    config: TrainConfig, out: str | Path, resume: bool = False, console: Console | None = None
) -> Path:
    """Train and return the run directory; with resume, continue the run saved there."""
    out = Path(out)
    check_settings(config, out, resume)
    data, model, train, val, step = prepare(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, factor=config.plateau_factor, patience=config.plateau_patience
    )
    state = {"epoch": 0, "best": math.inf, "bad_epochs": 0, "history": [], "seconds": 0.0}
    if resume and (out / "last.pt").exists():
        state = load_training_state(out, config, model, optimizer, plateau)
    else:
        write_json(out / "config.json", {"train": asdict(config), "data": data_summary(data)})
    weights = torch.from_numpy(data.weights.astype(np.float32))
    console = console or Console(stderr=True)
    while state["epoch"] < config.epochs and state["bad_epochs"] < config.stop_patience:
        if config.max_minutes and state["seconds"] >= 60 * config.max_minutes:
            break
        started = time.perf_counter()
        train_loss = run_epoch(model, train, optimizer, weights, config, step)
        val_loss = validation_loss(model, val, weights, config, step)
        plateau.step(val_loss)
        improved = record_epoch(state, train_loss, val_loss, optimizer.param_groups[0]["lr"], started)
        if improved:
            best = {"model": model.state_dict(), "epoch": state["epoch"]}
            atomic_write(out / "best.pt", lambda h, best=best: torch.save(best, h))
        save_training_state(out, model, optimizer, plateau, state)
        row = state["history"][-1]
        console.print(
            f"{config.name} epoch {row['epoch']}: train {train_loss:.4f} val {val_loss:.4f} "
            f"lr {row['lr']:.1e} {row['seconds']:.0f}s{' *' if improved else ''}",
            highlight=False,
        )
    return out


def record_epoch(
    state: dict[str, Any], train_loss: float, val_loss: float, lr: float, started: float
) -> bool:
    """Count the epoch in `state` (history row, best loss, epochs without improvement); True if best."""
    state["epoch"] += 1
    state["seconds"] += time.perf_counter() - started
    improved = val_loss < state["best"]
    state["best"], state["bad_epochs"] = (
        (val_loss, 0) if improved else (state["best"], state["bad_epochs"] + 1)
    )
    row = {"epoch": state["epoch"], "lr": lr, "train_loss": train_loss, "val_loss": val_loss}
    state["history"].append({**row, "seconds": state["seconds"]})
    return improved


def change_std(train: Samples) -> torch.Tensor:
    """Per variable, the std of the change over the samples' lead (normalised units), shaped (V, 1, 1)."""
    change = train.data[train.index + train.lead] - train.data[train.index]
    return change.std(dim=(0, 2, 3)).clamp(min=1e-6)[:, None, None]


def sample_loss(
    model: Forecaster,
    samples: Samples,
    rows: torch.Tensor,
    weights: torch.Tensor,
    config: TrainConfig,
    step: int,
) -> torch.Tensor:
    """The weighted loss of `unroll` autoregressive steps of `step` data steps each (one in direct mode)."""
    positions = samples.index[rows]
    x = samples.inputs(positions)
    loss = torch.zeros(())
    for k in range(1, config.unroll + 1):
        state = model(x)
        loss = loss + weighted_loss(state, samples.data[positions + k * step], weights, config.loss)
        x = torch.cat([state, x[:, : -model.variables]], dim=1)
    return loss / config.unroll


def run_epoch(
    model: Forecaster,
    train: Samples,
    optimizer: torch.optim.Optimizer,
    weights: torch.Tensor,
    config: TrainConfig,
    step: int,
) -> float:
    model.train()
    rows = torch.randperm(len(train))
    if config.samples_per_epoch:
        rows = rows[: config.samples_per_epoch]
    total, count = 0.0, 0
    for batch in rows.split(config.batch_size):
        loss = sample_loss(model, train, batch, weights, config, step)
        if not torch.isfinite(loss):
            raise DivergedError(f"the loss became {loss.item()}; lower lr")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total, count = total + loss.item() * len(batch), count + len(batch)
    return total / count


@torch.no_grad()
def validation_loss(
    model: Forecaster, val: Samples, weights: torch.Tensor, config: TrainConfig, step: int
) -> float:
    model.eval()
    batches = torch.arange(len(val)).split(256)
    return sum(
        sample_loss(model, val, rows, weights, config, step).item() * len(rows) for rows in batches
    ) / len(val)


def data_summary(data: GriddedData) -> dict[str, Any]:
    return {
        "names": data.names,
        "step_hours": data.step_hours,
        "grid": list(data.grid),
        "mean": data.mean.tolist(),
        "std": data.std.tolist(),
    }


def save_training_state(
    out: Path, model: Forecaster, optimizer: torch.optim.Optimizer, plateau: Any, state: dict[str, Any]
) -> None:
    payload = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "plateau": plateau.state_dict(),
        "state": json.dumps(state),
        "rng": torch.get_rng_state(),
    }
    atomic_write(out / "last.pt", lambda h: torch.save(payload, h))
    atomic_write_text(out / "metrics.csv", metrics_csv(state["history"]))


def load_training_state(
    out: Path, config: TrainConfig, model: Forecaster, optimizer: torch.optim.Optimizer, plateau: Any
) -> dict[str, Any]:
    saved = TrainConfig.from_dict(json.loads((out / "config.json").read_text())["train"])
    if replace(saved, epochs=config.epochs, max_minutes=config.max_minutes) != config:
        raise ReslabError(
            f"{str(out)!r} holds a run with other settings; resume it with the same ones", params=("resume",)
        )
    payload = torch.load(out / "last.pt", map_location="cpu", weights_only=True)
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    plateau.load_state_dict(payload["plateau"])
    torch.set_rng_state(payload["rng"])
    return json.loads(payload["state"])


def load_run(run: str | Path) -> tuple[TrainConfig, Forecaster, GriddedData]:
    """A trained run's settings, its best weights in a Forecaster (eval mode), and its data."""
    run = Path(run)
    if not (run / "config.json").is_file() or not (run / "best.pt").is_file():
        raise ReslabError(f"{str(run)!r} is not a forecast run (no config.json and best.pt)", params=("run",))
    config = TrainConfig.from_dict(json.loads((run / "config.json").read_text())["train"])
    data = load_data(config.data)
    model = build_forecaster(config, data)
    model.load_state_dict(torch.load(run / "best.pt", map_location="cpu", weights_only=True)["model"])
    return config, model.eval(), data

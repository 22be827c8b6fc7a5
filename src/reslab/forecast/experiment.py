"""`reslab forecast experiment`: simulate -> train (ResNet, plain twin, WeatherBench CNN) -> evaluate.

Two sizes. `small` is a first look (a few minutes); `default` is sized to finish in under 40 minutes on
a 2-core CPU with one thread: each network trains for a fixed time budget and stops early on validation.
All three are iterative (6 h steps, rolled out), so one training per network covers every lead.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from rich.console import Console

from ..atomic import write_json
from .data import DataConfig
from .evaluate import EvalConfig, evaluate_runs
from .models import NetConfig
from .plots import plot_simulation
from .simulate import SimulationConfig, simulate
from .train import TrainConfig, train_forecaster


@dataclass(frozen=True)
class ExperimentSize:
    simulation: SimulationConfig
    channels: int
    blocks: int
    minutes_per_model: float
    samples_per_epoch: int
    evaluation: EvalConfig = field(default_factory=EvalConfig)


SIZES = {
    "small": ExperimentSize(
        SimulationConfig(years=0.3, val_years=0.1, test_years=0.2, spinup_days=120),
        channels=32,
        blocks=4,
        minutes_per_model=0.5,
        samples_per_epoch=256,
        evaluation=EvalConfig(leads_hours=(6, 24, 72, 120, 240), every=8, ridge_samples=400),
    ),
    "default": ExperimentSize(
        SimulationConfig(years=2.0, val_years=0.5, test_years=1.0, spinup_days=200),
        channels=32,
        blocks=6,
        minutes_per_model=8.0,
        samples_per_epoch=1024,
        evaluation=EvalConfig(leads_hours=(6, 24, 72, 120, 240), every=12, ridge_samples=2000),
    ),
}


def experiment_runs(size: ExperimentSize, data_dir: Path, seed: int) -> dict[str, TrainConfig]:
    data = DataConfig(str(data_dir), variables=("z250", "t500"), history=3)
    net = NetConfig(channels=size.channels, blocks=size.blocks)
    base = TrainConfig(
        data=data,
        net=net,
        rollout=True,
        max_minutes=size.minutes_per_model,
        samples_per_epoch=size.samples_per_epoch,
        epochs=1000,
        seed=seed,
    )
    return {
        "resnet": base,
        "plain": replace(base, net=replace(net, name="plain")),
        "cnn": replace(base, net=NetConfig(name="cnn")),
    }


def run_experiment(
    out: str | Path,
    size_name: str,
    seed: int = 0,
    console: Console | None = None,
    on_day: Callable[[], None] | None = None,
    models: tuple[str, ...] = ("resnet", "plain", "cnn"),
) -> dict[str, Any]:
    """Run (or, where a step's output exists, reuse) every step; return forecast_scores.json's content."""
    out, size = Path(out), SIZES[size_name]
    console = console or Console(stderr=True)
    simulation = replace(size.simulation, seed=seed)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    simulate(out / "data", simulation, on_day)
    stationarity = plot_simulation(out / "data")
    timings["simulate"] = time.perf_counter() - started
    for name, config in experiment_runs(size, out / "data", seed).items():
        if name not in models:
            continue
        started = time.perf_counter()
        train_forecaster(config, out / "runs" / name, resume=True, console=console)
        timings[f"train {name}"] = time.perf_counter() - started
    started = time.perf_counter()
    result = evaluate_runs([out / "runs" / name for name in models], out, size.evaluation)
    timings["evaluate"] = time.perf_counter() - started
    write_json(
        out / "experiment.json",
        {
            "size": size_name,
            "seed": seed,
            "settings": asdict(size),
            "seconds": timings,
            "eddy_energy": stationarity,
        },
    )
    return result

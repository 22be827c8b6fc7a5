"""Scoring forecast runs and the baselines on the test split, by the same code, at the same start times.

Every model forecasts from the same initial times; a rollout run steps its own lead until each asked lead,
a direct run is scored at its one lead. Baselines (persistence, climatology, ridge) are computed here from
the same data. Scores are WeatherBench's (metrics.py), in physical units.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..atomic import write_json
from ..errors import ReslabError
from .baselines import RidgeForecasts, climatology, persistence
from .data import GriddedData, Samples
from .metrics import weighted_acc, weighted_rmse
from .models import Forecaster
from .train import TrainConfig, load_run, step_count


@dataclass(frozen=True)
class EvalConfig:
    leads_hours: tuple[float, ...] = (6.0, 24.0, 72.0, 120.0)
    every: int = 2  # every second test time is an initial time
    baselines: bool = True
    ridge_samples: int = 3000


@dataclass
class Run:
    path: Path
    config: TrainConfig
    model: Forecaster


def find_runs(paths: list[str | Path]) -> list[Path]:
    """Each path is a run directory, or a folder whose subfolders are runs."""
    runs: list[Path] = []
    for path in map(Path, paths):
        if (path / "config.json").is_file():
            runs.append(path)
        else:
            runs += sorted(p.parent for p in path.glob("*/config.json"))
    if not runs:
        raise ReslabError(f"no forecast run in {', '.join(map(str, paths))}", params=("run",))
    return runs


def load_runs(paths: list[Path]) -> tuple[list[Run], GriddedData]:
    loaded = [load_run(path) for path in paths]
    data = loaded[0][2]
    for path, (config, _, _) in zip(paths[1:], loaded[1:], strict=True):
        if config.data != loaded[0][0].data:
            raise ReslabError(
                f"run {str(path)!r} was trained on other data than {str(paths[0])!r}", params=("run",)
            )
    return [Run(path, config, model) for path, (config, model, _) in zip(paths, loaded, strict=True)], data


@torch.no_grad()
def rollout(
    model: Forecaster, inputs: torch.Tensor, steps: list[int], variables: int
) -> dict[int, torch.Tensor]:
    """Apply the model `max(steps)` times, feeding each output back as the latest state."""
    out = {}
    for step in range(1, max(steps) + 1):
        state = model(inputs)
        inputs = torch.cat([state, inputs[:, :-variables]], dim=1)
        if step in steps:
            out[step] = state
    return out


def model_forecasts(
    run: Run, data: GriddedData, test: Samples, positions: torch.Tensor, leads: list[int]
) -> dict[int, torch.Tensor]:
    """Normalised forecasts at each lead (in data steps) the run can make, from `positions`."""
    step = step_count(run.config, data)
    own = (
        [lead for lead in leads if lead % step == 0]
        if run.config.rollout
        else [lead for lead in leads if lead == step]
    )
    if not own:
        return {}
    parts = [
        rollout(run.model, test.inputs(chunk), [lead // step for lead in own], len(data.names))
        for chunk in positions.split(128)
    ]
    return {lead: torch.cat([part[lead // step] for part in parts]) for lead in own}


def baseline_forecasts(
    data: GriddedData,
    test: Samples,
    positions: torch.Tensor,
    leads: list[int],
    config: EvalConfig,
    history: int,
) -> tuple[dict[str, dict[int, torch.Tensor]], dict[int, float]]:
    """Persistence, climatology and ridge forecasts at each lead; and ridge's penalty per lead."""
    train_segments = data.normalised("train")
    mean_state = climatology(Samples(train_segments, history, 0), len(positions))
    ridge = RidgeForecasts(train_segments, history, max(leads), config.ridge_samples)
    out: dict[str, dict[int, torch.Tensor]] = {"persistence": {}, "climatology": {}, "ridge": {}}
    alphas = {}
    inputs = test.inputs(positions)
    for lead in leads:
        out["persistence"][lead] = persistence(test, positions)
        out["climatology"][lead] = mean_state
        val = Samples(data.normalised("val"), history, lead, every=config.every)
        out["ridge"][lead], alphas[lead] = ridge.fit_predict(lead, val, inputs)
    return out, alphas


def score(
    forecasts: dict[str, dict[int, torch.Tensor]],
    truth: dict[int, np.ndarray],
    data: GriddedData,
    leads: list[int],
) -> dict[str, Any]:
    """forecast_scores.json's "models": per model, per variable, RMSE and ACC at each lead (None where a
    model has no forecast at that lead)."""
    scale = (data.std[:, None, None], data.mean[:, None, None])
    models: dict[str, Any] = {}
    for name, by_lead in forecasts.items():
        entry: dict[str, dict[str, list[float | None]]] = {
            "rmse": {v: [] for v in data.names},
            "acc": {v: [] for v in data.names},
        }
        for lead in leads:
            if lead not in by_lead:
                for metric in entry.values():
                    for values in metric.values():
                        values.append(None)
                continue
            forecast = by_lead[lead].numpy() * scale[0] + scale[1]
            for metric, fn in (("rmse", weighted_rmse), ("acc", weighted_acc)):
                for var, value in zip(data.names, fn(forecast, truth[lead], data.weights), strict=True):
                    entry[metric][var].append(float(value))
        models[name] = entry
    return models


def evaluate_runs(paths: list[str | Path], out: str | Path, config: EvalConfig) -> dict[str, Any]:
    """Score the runs (and baselines) on the test split; write forecast_scores.json and the plots to out."""
    runs, data = load_runs(find_runs(paths))
    leads = [data.steps(hours) for hours in config.leads_hours]
    history = max(run.config.data.history for run in runs)
    test = Samples(data.normalised("test"), history, max(leads), every=config.every)
    if len(test) == 0:
        raise ReslabError(
            f"the test split is shorter than the longest lead ({max(config.leads_hours):g}h)",
            params=("leads",),
        )
    positions = test.index
    truth = {
        lead: test.data[positions + lead].numpy() * data.std[:, None, None] + data.mean[:, None, None]
        for lead in leads
    }
    forecasts, alphas = (
        baseline_forecasts(data, test, positions, leads, config, history) if config.baselines else ({}, {})
    )
    for run in runs:
        forecasts.setdefault(run.config.name, {}).update(model_forecasts(run, data, test, positions, leads))
    result = {
        "leads_hours": [lead * data.step_hours for lead in leads],
        "models": score(forecasts, truth, data, leads),
        "samples": len(positions),
        "runs": {run.config.name: str(run.path) for run in runs},
        "ridge_alpha": {f"{lead * data.step_hours:g}h": alpha for lead, alpha in alphas.items()},
    }
    out = Path(out)
    write_json(out / "forecast_scores.json", result)
    from .plots import plot_map, plot_rmse, plot_spectra

    plot_rmse(result, out / "rmse_vs_lead.png")
    learned = [run.config.name for run in runs if any(forecasts[run.config.name])]
    if learned:
        name = learned[0]
        lead = min(forecasts[name], key=lambda lead: abs(lead * data.step_hours - 120))  # 5 days, or nearest
        plot_map(
            forecasts[name][lead][0].numpy(),
            truth[lead][0],
            data,
            name,
            lead * data.step_hours,
            out / "forecast_map.png",
        )
        rolled = {n: f for n, f in forecasts.items() if n in learned and len(f) > 1}
        if rolled:
            plot_spectra(rolled, truth, data, out / "spectra.png")
    return result


def read_scores(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())
